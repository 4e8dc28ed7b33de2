"""What every phase needs: resolving `config.model.source` into a model, the
sampling parameters from the config."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from sjjax import assets
from sjjax.config import ConfigError
from sjjax.model.config import ModelConfig
from sjjax.model.loading import build_model, load_pretrained
from sjjax.model.transformer import split_params
from sjjax.sampling import SamplingParams


@dataclasses.dataclass
class Policy:
    """A model as the phases use it: static graph, parameter trees, tokenizer."""
    graphdef: Any
    params: dict
    lora: dict
    model_config: ModelConfig
    tokenizer: Any

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
    if not os.path.exists(source):
        raise ConfigError(f"config.model.source: {source!r} is neither 'smollm2', 'tiny' nor "
                          f"an existing file or directory")
    return source


def model_overrides(model_config) -> dict:
    return dict(dtype=model_config.dtype, param_dtype=model_config.param_dtype,
                remat=model_config.remat)


def load_policy(config) -> Policy:
    """Loads the model named by config.model.source (pretrained weights)."""
    path = resolve_source(config.model.source)
    cfg, params, tokenizer = load_pretrained(path, **model_overrides(config.model))
    graphdef, params, lora = split_params(build_model(cfg, params))
    return Policy(graphdef, params, lora, cfg, tokenizer)


def sampling_params(s) -> SamplingParams:
    return SamplingParams(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                          greedy=s.greedy)
