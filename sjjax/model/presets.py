"""Named architectures (shapes only, no weights) as `ModelConfig`s.

    from sjjax.model.presets import get_architecture
    cfg = get_architecture("llama2_7b", param_dtype="bfloat16", dtype="bfloat16", remat="full")

Used by the memory/FLOPs planner (`python -m sjjax.plan`) and for random-init
experiments at real sizes. The numbers are those of the Hugging Face `config.json`
of each model (layers, widths, heads, vocab, rope, norm epsilon, tying).

These are architectures, not experiment setups: the named setups of every phase
(`sjjax.presets.PRESETS`, some of which share a name such as "llama2_7b") are another table.
"""

from __future__ import annotations

from sjjax.model.config import ModelConfig

_LLAMA3_ROPE_SCALING = tuple(sorted({
    "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192}.items()))

ARCHITECTURES: dict[str, dict] = {
    # HuggingFaceTB/SmolLM2-135M(-Instruct): the model this project runs on CPU.
    "smollm2_135m": dict(
        model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
        num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64, rope_theta=100000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=True, max_position_embeddings=8192,
        bos_token_id=1, eos_token_id=2, pad_token_id=2),
    # meta-llama/Llama-2-7b-hf: the paper's model.
    "llama2_7b": dict(
        model_type="llama", vocab_size=32000, hidden_size=4096, intermediate_size=11008,
        num_layers=32, num_heads=32, num_kv_heads=32, head_dim=128, rope_theta=10000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=False, max_position_embeddings=4096,
        bos_token_id=1, eos_token_id=2),
    # meta-llama/Meta-Llama-3-8B.
    "llama3_8b": dict(
        model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
        num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128, rope_theta=500000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=False, max_position_embeddings=8192,
        bos_token_id=128000, eos_token_id=128001),
    # mistralai/Mistral-7B-v0.1 (sliding-window attention of 4096 tokens).
    "mistral_7b": dict(
        model_type="mistral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
        num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128, rope_theta=10000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=False, max_position_embeddings=32768,
        sliding_window=4096, bos_token_id=1, eos_token_id=2),
    # meta-llama/Llama-3.2-1B: a ~1.24B model for single-GPU MFU measurements.
    "llama_1b": dict(
        model_type="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
        num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64, rope_theta=500000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=True, max_position_embeddings=131072,
        rope_scaling=_LLAMA3_ROPE_SCALING, bos_token_id=128000, eos_token_id=128001),
}

# Other spellings accepted by `get_architecture` (e.g. config.model.source = "smollm2").
ALIASES = {"smollm2": "smollm2_135m", "llama2-7b": "llama2_7b", "llama3-8b": "llama3_8b",
           "mistral-7b": "mistral_7b", "llama-1b": "llama_1b", "llama3_2_1b": "llama_1b"}


def architecture_names() -> list[str]:
    return sorted(ARCHITECTURES)


def is_architecture(name: str) -> bool:
    return name in ARCHITECTURES or name in ALIASES


def get_architecture(name: str, **overrides) -> ModelConfig:
    """The named architecture as a ModelConfig; `overrides` replace any field
    (dtype, param_dtype, remat, num_layers for a shallow copy, ...)."""
    key = ALIASES.get(name, name)
    if key not in ARCHITECTURES:
        raise KeyError(f"unknown model architecture {name!r}; known: {architecture_names()} "
                       f"(aliases {sorted(ALIASES)})")
    return ModelConfig(**{**ARCHITECTURES[key], **overrides})
