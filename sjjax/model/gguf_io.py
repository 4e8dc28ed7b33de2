"""GGUF (llama.cpp) checkpoints -> sjjax parameters.

Tensors are dequantized with the `gguf` package, renamed to Hugging Face names and
then go through the same mapping as safetensors checkpoints (`hf_io`). llama.cpp
stores the q/k projections of LLaMA-architecture models permuted for its
interleaved RoPE; `unpermute_qk` undoes that, giving the HF "rotate half" layout.
"""

from __future__ import annotations

import os
import re

import numpy as np

from sjjax.model.config import ModelConfig, UnsupportedArchitectureError
from sjjax.model.hf_io import hf_tensors_to_params

SUPPORTED_GGUF_ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2"}

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_LAYER_RE = re.compile(r"^blk\.(\d+)\.(.+)$")


def unpermute_qk(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's convert permutation: per head, the interleaved
    (x0, y0, x1, y1, ...) rows go back to (x0, x1, ..., y0, y1, ...)."""
    half = weight.shape[0] // num_heads // 2
    w = weight.reshape(num_heads, half, 2, *weight.shape[1:])
    return w.swapaxes(1, 2).reshape(weight.shape)


def hf_name(gguf_name: str) -> str | None:
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    match = _LAYER_RE.match(gguf_name)
    if match and match.group(2) in _LAYER_NAMES:
        return f"model.layers.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    return None


def _field(reader, key, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    value = field.contents()
    return value


def config_from_gguf(reader, path: str, **overrides) -> ModelConfig:
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_GGUF_ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"{path}: unsupported GGUF architecture {arch!r}; sjjax implements "
            f"{sorted(SUPPORTED_GGUF_ARCHITECTURES)}")

    def meta(key, default=None):
        value = _field(reader, f"{arch}.{key}", default)
        if value is None:
            raise ValueError(f"{path}: GGUF metadata {arch}.{key} is missing")
        return value

    num_heads = int(meta("attention.head_count"))
    hidden = int(meta("embedding_length"))
    names = {t.name for t in reader.tensors}
    vocab = _field(reader, f"{arch}.vocab_size")
    if vocab is None:
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    kwargs = dict(
        model_type=SUPPORTED_GGUF_ARCHITECTURES[arch],
        vocab_size=int(vocab),
        hidden_size=hidden,
        intermediate_size=int(meta("feed_forward_length")),
        num_layers=int(meta("block_count")),
        num_heads=num_heads,
        num_kv_heads=int(meta("attention.head_count_kv", num_heads)),
        head_dim=int(_field(reader, f"{arch}.attention.key_length", hidden // num_heads)),
        rms_norm_eps=float(meta("attention.layer_norm_rms_epsilon")),
        rope_theta=float(meta("rope.freq_base", 10000.0)),
        max_position_embeddings=int(meta("context_length", 2048)),
        tie_word_embeddings="output.weight" not in names,
        attention_bias="blk.0.attn_q.bias" in names,
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
    )
    kwargs.update(overrides)
    return ModelConfig(**kwargs)


def load_gguf(path: str | os.PathLike, **config_overrides) -> tuple[ModelConfig, dict]:
    """Loads a GGUF file -> (config, numpy params in the config's param_dtype)."""
    import gguf

    path = os.fspath(path)
    reader = gguf.GGUFReader(path)
    cfg = config_from_gguf(reader, path, **config_overrides)
    tensors = {}
    for tensor in reader.tensors:
        name = hf_name(tensor.name)
        if name is None:
            if tensor.name.startswith("rope_freqs"):
                continue  # llama.cpp's precomputed rope factors; recomputed from the config
            raise ValueError(f"{path}: unknown GGUF tensor {tensor.name!r}")
        tensors[name] = tensor

    def get(name: str) -> np.ndarray:
        tensor = tensors[name]
        array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        # GGUF lists dims fastest-first; numpy order is the reverse, i.e. the HF layout.
        array = np.asarray(array, np.float32).reshape(tuple(reversed(
            [int(d) for d in tensor.shape])))
        if cfg.model_type == "llama" and name.endswith("q_proj.weight"):
            array = unpermute_qk(array, cfg.num_heads)
        elif cfg.model_type == "llama" and name.endswith("k_proj.weight"):
            array = unpermute_qk(array, cfg.num_kv_heads)
        return array

    return cfg, hf_tensors_to_params(get, set(tensors), cfg, source=path)
