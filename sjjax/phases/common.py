"""What every phase needs: resolving `config.model.source` into a model, the
sampling parameters from the config."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from sjjax import assets
from sjjax.checkpoint import is_run_dir
from sjjax.config import ConfigError
from sjjax.model.config import ModelConfig
from sjjax.model.loading import build_model, load_pretrained
from sjjax.model.transformer import abstract_model, split_params
from sjjax.sampling import SamplingParams


@dataclasses.dataclass
class Policy:
    """A model as the phases use it: static graph, parameter trees, tokenizer."""
    graphdef: Any
    params: dict
    lora: dict
    model_config: ModelConfig
    tokenizer: Any
    bos: tuple[int, ...] = ()   # ids before every prompt (config.model.add_bos)

    @property
    def eos_ids(self) -> tuple[int, ...]:
        ids = {self.tokenizer.eos_token_id}
        eos = self.model_config.eos_token_id
        ids.update(eos if isinstance(eos, tuple) else [eos])
        return tuple(sorted(i for i in ids if i is not None))


def resolve_source(source: str) -> str:
    """'smollm2' -> the cached GGUF; a path is returned as is (checked to exist)."""
    if source == "smollm2":
        return assets.smollm2_path()
    if "://" in source:
        return source
    if not os.path.exists(source):
        raise ConfigError(f"config.model.source: {source!r} is neither 'smollm2', 'tiny' nor "
                          f"an existing file or directory")
    return source


def model_overrides(model_config) -> dict:
    return dict(dtype=model_config.dtype, param_dtype=model_config.param_dtype,
                remat=model_config.remat, attention=model_config.get("attention", "auto"))


def load_policy(config) -> Policy:
    """The model named by config.model.source:
    - "tiny": a from-scratch model (config.model.tiny) with the synthetic suite's
      tokenizer, randomly initialised with config.seed;
    - an sjjax run directory: the final parameters of that phase;
    - "smollm2", a HF model directory or a .gguf file: pretrained weights.
    """
    source = config.model.source
    if source == "tiny":
        return apply_tokenizer_options(_tiny_policy(config), config.model)
    path = resolve_source(source)
    if "://" in path or is_run_dir(path):
        return load_run_dir(path, config.model)
    cfg, params, tokenizer = load_pretrained(path, **model_overrides(config.model))
    graphdef, params, lora = split_params(build_model(cfg, params))
    return apply_tokenizer_options(Policy(graphdef, params, lora, cfg, tokenizer),
                                   config.model)


def apply_tokenizer_options(policy: Policy, model_config) -> Policy:
    """config.model.chat_template ("" = the tokenizer's own) and config.model.add_bos
    (-> policy.bos) applied to a loaded policy."""
    from sjjax.data.templates import bos_ids
    template = model_config.get("chat_template", "") if model_config is not None else ""
    if template:
        policy.tokenizer.chat_template = template
    add_bos = model_config.get("add_bos", "never") if model_config is not None else "never"
    policy.bos = bos_ids(policy.tokenizer, add_bos)
    return policy


def load_run_dir(run_dir: str, model_config=None) -> Policy:
    """A previous phase's output: architecture + tokenizer from run_dir/model, weights
    from run_dir/final (LoRA already merged)."""
    from sjjax.checkpoint import load_final
    from sjjax.model.tokenizer import load_tokenizer
    from sjjax import fs
    overrides = model_overrides(model_config) if model_config is not None else {}
    model_dir = fs.local_copy(fs.join(run_dir, "model"))
    cfg = ModelConfig.from_hf_json(os.path.join(model_dir, "config.json"), **overrides)
    graphdef, abstract, _ = split_params(abstract_model(cfg))
    params, _ = load_final(run_dir, abstract)
    return apply_tokenizer_options(Policy(graphdef, params, {}, cfg, load_tokenizer(model_dir)),
                                   model_config)


def _tiny_policy(config) -> Policy:
    from sjjax.data.tiny_tokenizer import build_tiny_tokenizer
    from sjjax.model.tokenizer import prepare_tokenizer
    from sjjax.model.transformer import init_model
    tiny = config.model.tiny
    tokenizer = prepare_tokenizer(build_tiny_tokenizer(vocab_size=tiny.get("vocab_size", 1024),
                                                       seed=tiny.get("tokenizer_seed", 0),
                                                       numbers=tiny.get("numbers", "digits")))
    fields = {k: v for k, v in tiny.items()
              if k not in ("vocab_size", "tokenizer_seed", "numbers")}
    cfg = ModelConfig(vocab_size=len(tokenizer), model_type="llama",
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                      **fields, **model_overrides(config.model))
    graphdef, params, lora = split_params(init_model(cfg, seed=config.seed))
    return Policy(graphdef, params, lora, cfg, tokenizer)


def sampling_params(s) -> SamplingParams:
    return SamplingParams(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                          greedy=s.greedy)
