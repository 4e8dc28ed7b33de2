"""Llama-family decoder, KV cache, LoRA and checkpoint import/export."""

from sjjax.model.config import ModelConfig, UnsupportedArchitectureError
from sjjax.model.kv_cache import KVCache
from sjjax.model.transformer import (LoRAParam, Transformer, abstract_model, init_model,
                                     logical_axes, merge_params, split_params)

__all__ = ["ModelConfig", "UnsupportedArchitectureError", "KVCache", "LoRAParam", "Transformer",
           "abstract_model", "init_model", "logical_axes", "merge_params", "split_params"]
