"""One entry point for pretrained weights: `load_pretrained(path)` for a HF directory
or a GGUF file, and `build_model` to turn (config, params) into a Flax model."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from flax import nnx

from sjjax.errors import InputNotFoundError
from sjjax.model.config import ModelConfig
from sjjax.model.gguf_io import load_gguf
from sjjax.model.hf_io import load_hf_dir
from sjjax.model.tokenizer import load_tokenizer
from sjjax.model.transformer import Transformer, abstract_model


def load_pretrained(path: str | os.PathLike, *, with_tokenizer: bool = True,
                    **config_overrides):
    """-> (ModelConfig, numpy params, tokenizer or None).

    `config_overrides` sets fields such as dtype="bfloat16", param_dtype, remat.
    """
    path = os.fspath(path)
    if path.endswith(".gguf"):
        cfg, params = load_gguf(path, **config_overrides)
    elif os.path.isdir(path):
        cfg, params = load_hf_dir(path, **config_overrides)
    else:
        raise InputNotFoundError(f"{path}: neither a .gguf file nor a model directory "
                                 f"(config.model.source?)")
    tokenizer = load_tokenizer(path) if with_tokenizer else None
    return cfg, params, tokenizer


def build_model(cfg: ModelConfig, params, lora=None) -> Transformer:
    """A Transformer holding `params` (a nested dict as produced by `split_params`),
    without ever allocating random weights."""
    graphdef, _, _ = nnx.split(abstract_model(cfg), nnx.Param, ...)
    params = jax.tree.map(jnp.asarray, params)
    return nnx.merge(graphdef, params, *([lora] if lora else []))
