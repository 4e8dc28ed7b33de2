"""The config schema shared by every phase, and its validation.

Config files in `configs/` start from `base_config(phase)` and change what they
need; the command line overrides any field (`--config.train.learning_rate=1e-5`).
`validate` runs before anything is compiled and names the offending key.
"""

from __future__ import annotations

import json

import ml_collections

from sjjax import sharding


from sjjax.errors import ConfigError  # noqa: F401  (re-exported)


def default_judge_templates() -> dict:
    """The judge templates: principle -> {system, user, assistant_prefix[, rationale]}.

    `user` must contain {context}, {response_a} and {response_b}, in that order.
    """
    return {
        "helpfulness": {
            "system": "",
            "user": ("Which response is better? Judge by helpfulness and correctness.\n\n"
                     "[Conversation]\n{context}\n\n[Response A]\n{response_a}\n\n"
                     "[Response B]\n{response_b}\n\nAnswer with A or B."),
            "assistant_prefix": "Answer:",
            "rationale": "\nRationale for A: {rationale_a}\nRationale for B: {rationale_b}",
        },
    }


PRINCIPLE_DESCRIPTIONS = {
    "helpfulness": "helpfulness: does the response address the request usefully and correctly?",
    "honesty": "honesty: does the response express uncertainty where it should, and avoid "
               "claims it cannot support?",
    "instruction_following": "instruction following: does the response do what was asked, "
                             "in the requested form?",
    "truthfulness": "truthfulness: is the response free of fabricated or false information?",
}


def principle_judge_templates(principles=tuple(PRINCIPLE_DESCRIPTIONS)) -> dict:
    """One template per principle (the paper's JM-PR setting with UltraFeedback): the
    principle in the system text, and a rationale after the decision token."""
    base = default_judge_templates()["helpfulness"]
    return {p: dict(base, system=f"You judge responses by {PRINCIPLE_DESCRIPTIONS[p]}",
                    user=base["user"].replace("by helpfulness and correctness",
                                              f"by {p.replace('_', ' ')}"))
            for p in principles}


def base_config(phase: str) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.phase = phase
    c.run_dir = f"runs/{phase}"
    c.seed = 0

    # ---------------------------------------------------------------- model
    c.model = ml_collections.ConfigDict()
    # "smollm2" (the fetched asset), "tiny" (from scratch), a HF dir, a .gguf file,
    # or an sjjax checkpoint directory (a previous phase's run_dir).
    c.model.source = "smollm2"
    c.model.dtype = "float32"        # compute dtype: bfloat16 on accelerators
    c.model.param_dtype = "float32"
    c.model.remat = "none"           # none | full | dots
    c.model.tiny = ml_collections.ConfigDict(dict(
        hidden_size=256, intermediate_size=768, num_layers=4, num_heads=8, num_kv_heads=4,
        head_dim=32, max_position_embeddings=512, tie_word_embeddings=True,
        rope_theta=10000.0))

    # ---------------------------------------------------------------- LoRA
    c.lora = ml_collections.ConfigDict(dict(
        enabled=False, rank=8, alpha=16.0, targets=("q_proj", "v_proj")))

    # ---------------------------------------------------------------- mesh
    c.mesh = ml_collections.ConfigDict(dict(
        shape=(-1, 1, 1), axes=sharding.MESH_AXES,
        rules=tuple((k, v) for k, v in sharding.DEFAULT_RULES)))

    # ---------------------------------------------------------------- judge
    c.judge = ml_collections.ConfigDict()
    c.judge.tokens = (" A", " B")
    c.judge.templates = default_judge_templates()
    c.judge.principles = ("helpfulness",)  # which templates are used
    c.judge.batch_size = 8

    # ---------------------------------------------------------------- sampling
    c.sampling = ml_collections.ConfigDict(dict(
        max_new_tokens=128, temperature=1.0, top_p=0.9, top_k=0, greedy=False,
        prompt_bucket=32, batch_size=8))

    c.judge.max_length = 1024  # online judge prompts: context, then responses, trimmed

    # ---------------------------------------------------------------- data
    from sjjax.data.datasets import default_data_config
    c.data = default_data_config()
    c.data.length_bucket = 32  # padding multiple for sampled sequences (self-judge)

    # ---------------------------------------------------------------- training
    c.train = ml_collections.ConfigDict(dict(
        steps=0,                 # 0 = one pass as given by data.num_epochs
        learning_rate=2e-5, schedule="cosine", warmup_ratio=0.03, warmup_steps=0,
        weight_decay=0.0, max_grad_norm=1.0, adam_b1=0.9, adam_b2=0.999, adam_eps=1e-8,
        grad_accum=1,
        loss_normalization="token",  # token | example
        judge_loss_weight=1.0,       # weight of judgment examples in the JSFT loss
    ))
    c.dpo = ml_collections.ConfigDict(dict(beta=0.1, loss_type="sigmoid", label_smoothing=0.0))
    c.checkpoint = ml_collections.ConfigDict(dict(every_steps=50, keep=2, export_hf=False))

    # ---------------------------------------------------------------- logging
    c.log = ml_collections.ConfigDict(dict(every_steps=10, tensorboard=True, progress=True))
    return c


_DTYPES = ("float32", "bfloat16", "float16")


def _require(cond: bool, key: str, message: str):
    if not cond:
        raise ConfigError(f"config.{key}: {message}")


def validate(c: ml_collections.ConfigDict) -> None:
    """Checks values and cross-field constraints; raises ConfigError naming the key."""
    _require(isinstance(c.get("phase"), str), "phase", "missing")
    _require(bool(c.get("run_dir")), "run_dir", "must be a directory path")
    if "model" in c:
        _require(c.model.dtype in _DTYPES, "model.dtype", f"{c.model.dtype!r} not in {_DTYPES}")
        _require(c.model.param_dtype in _DTYPES, "model.param_dtype",
                 f"{c.model.param_dtype!r} not in {_DTYPES}")
        _require(c.model.remat in ("none", "full", "dots"), "model.remat",
                 f"{c.model.remat!r} not in (none, full, dots)")
        _require(bool(c.model.source), "model.source", "empty")
    if "lora" in c and c.lora.enabled:
        _require(c.lora.rank > 0, "lora.rank", "must be > 0")
        from sjjax.model.transformer import PROJECTION_AXES
        bad = [t for t in c.lora.targets if t not in PROJECTION_AXES or t == "lm_head"]
        _require(not bad, "lora.targets", f"unknown projections {bad}")
    if "mesh" in c:
        _require(len(c.mesh.shape) == len(c.mesh.axes), "mesh.shape",
                 f"{tuple(c.mesh.shape)} does not match axes {tuple(c.mesh.axes)}")
        _require(list(c.mesh.shape).count(-1) <= 1, "mesh.shape", "at most one -1")
    if "sampling" in c:
        s = c.sampling
        _require(s.max_new_tokens > 0, "sampling.max_new_tokens", "must be > 0")
        _require(s.greedy or s.temperature > 0, "sampling.temperature", "must be > 0")
        _require(0 < s.top_p <= 1, "sampling.top_p", "must be in (0, 1]")
        _require(s.top_k >= 0, "sampling.top_k", "must be >= 0")
    if "judge" in c:
        _require(len(c.judge.tokens) == 2 and c.judge.tokens[0] != c.judge.tokens[1],
                 "judge.tokens", "needs two distinct strings")
        from sjjax.data.templates import validate_judge_templates
        validate_judge_templates(c.judge.templates, c.judge.principles)
    from sjjax import phases
    phases.validate_phase_config(c)


def save_resolved(c: ml_collections.ConfigDict, directory: str) -> str:
    """Writes the resolved config as JSON next to a checkpoint; returns the path."""
    from sjjax import fs
    path = fs.join(directory, "config.json")
    fs.write_text(path, c.to_json_best_effort(indent=2, sort_keys=True))
    return path


def load_resolved(directory: str) -> ml_collections.ConfigDict:
    from sjjax import fs
    return ml_collections.ConfigDict(json.loads(fs.read_text(fs.join(directory, "config.json"))))
