"""Model configuration for the Llama family (Llama 2/3, Mistral, Qwen2, SmolLM2).

`ModelConfig` is a frozen (hashable) dataclass so it can be a static argument of
`jax.jit`. It is built from, and written back to, a Hugging Face `config.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import jax.numpy as jnp

from sjjax.errors import ConfigError, InputNotFoundError, ModelFileError, SjjaxError

# model_type -> the architecture names transformers writes into config.json.
SUPPORTED_MODEL_TYPES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
}

# Kept here (not imported from sjjax.model.attention) so that the config imports no kernel.
ATTENTION_IMPLEMENTATIONS = ("auto", "xla", "cudnn", "splash")

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class UnsupportedArchitectureError(SjjaxError, ValueError):
    """The checkpoint's architecture is not one this decoder implements."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a decoder-only Llama-family transformer.

    Shapes used throughout: d = hidden_size, H = num_heads, K = num_kv_heads,
    Dh = head_dim, F = intermediate_size, V = vocab_size, L = num_layers.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    # Rope scaling as a sorted tuple of (key, value) pairs so the config stays hashable.
    rope_scaling: tuple[tuple[str, Any], ...] | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    # q/k/v biases (Qwen2 always; Llama's `attention_bias=True` adds one on o_proj too:
    # see `output_bias`).
    attention_bias: bool = False
    mlp_bias: bool = False
    sliding_window: int | None = None  # Mistral-style local attention
    model_type: str = "llama"
    initializer_range: float = 0.02
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    # Numerics: parameters are stored in param_dtype, matmuls run in dtype.
    dtype: str = "float32"
    param_dtype: str = "float32"
    # Rematerialisation of each decoder layer in the backward pass: none | full | dots.
    remat: str = "none"
    # Attention implementation: auto | xla | cudnn | splash (sjjax.model.attention).
    attention: str = "auto"

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedArchitectureError(
                f"model_type {self.model_type!r} is not supported; supported: "
                f"{sorted(SUPPORTED_MODEL_TYPES)}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"model config: num_heads={self.num_heads} is not a multiple of "
                              f"num_kv_heads={self.num_kv_heads} (config.model.tiny, or the "
                              f"model's config.json)")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in _DTYPES:
                raise ConfigError(f"config.model.{name}: {getattr(self, name)!r}; expected one "
                                  f"of {sorted(_DTYPES)}")
        if self.remat not in ("none", "full", "dots"):
            raise ConfigError(f"config.model.remat: {self.remat!r}; expected none, full or dots")
        if self.attention not in ATTENTION_IMPLEMENTATIONS:
            raise ConfigError(f"config.model.attention: {self.attention!r}; expected one of "
                              f"{', '.join(ATTENTION_IMPLEMENTATIONS)}")

    @property
    def compute_dtype(self):
        return _DTYPES[self.dtype]

    @property
    def weight_dtype(self):
        return _DTYPES[self.param_dtype]

    @property
    def rope_scaling_dict(self) -> dict | None:
        return dict(self.rope_scaling) if self.rope_scaling else None

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    @property
    def output_bias(self) -> bool:
        """Whether o_proj has a bias: transformers' Llama gives every attention projection
        one under `attention_bias=True`; Qwen2 biases q/k/v only; Mistral has none."""
        return self.attention_bias and self.model_type == "llama"

    def num_params(self) -> int:
        """Parameter count (without LoRA adapters)."""
        d, f, v, l = self.hidden_size, self.intermediate_size, self.vocab_size, self.num_layers
        q = d * self.num_heads * self.head_dim
        kv = 2 * d * self.num_kv_heads * self.head_dim
        attn = q + kv + self.num_heads * self.head_dim * d
        if self.attention_bias:
            attn += (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
        if self.output_bias:
            attn += d
        mlp = 3 * d * f + (2 * f + d if self.mlp_bias else 0)
        per_layer = attn + mlp + 2 * d
        head = 0 if self.tie_word_embeddings else d * v
        return v * d + l * per_layer + d + head

    # ------------------------------------------------------------------ HF I/O
    @classmethod
    def from_hf_dict(cls, hf: Mapping[str, Any], **overrides) -> "ModelConfig":
        """Builds a config from the contents of a Hugging Face `config.json`."""
        model_type = hf.get("model_type")
        archs = hf.get("architectures") or []
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedArchitectureError(
                f"unsupported architecture: model_type={model_type!r}, architectures={archs}; "
                f"sjjax implements {sorted(SUPPORTED_MODEL_TYPES)} (the Llama family); "
                f"pick a model of that family")
        for arch in archs:
            if arch not in SUPPORTED_MODEL_TYPES.values():
                raise UnsupportedArchitectureError(
                    f"unsupported architecture {arch!r}; sjjax implements "
                    f"{sorted(SUPPORTED_MODEL_TYPES.values())} (the Llama family)")
        num_heads = hf["num_attention_heads"]
        head_dim = hf.get("head_dim") or hf["hidden_size"] // num_heads
        rope_scaling = hf.get("rope_scaling")
        rope_theta = hf.get("rope_theta")
        # transformers >= 5 may fold rope settings into `rope_parameters`.
        rope_params = hf.get("rope_parameters")
        if isinstance(rope_params, Mapping):
            rope_theta = rope_params.get("rope_theta", rope_theta)
            if rope_params.get("rope_type", "default") != "default":
                rope_scaling = {k: v for k, v in rope_params.items() if k != "rope_theta"}
        if rope_scaling:
            rope_type = rope_scaling.get("rope_type", rope_scaling.get("type", "default"))
            if rope_type not in ("default", "linear", "llama3"):
                raise UnsupportedArchitectureError(f"unsupported rope_scaling type {rope_type!r}")
            rope_scaling = {**rope_scaling, "rope_type": rope_type}
            rope_scaling.pop("type", None)
            if rope_type == "default":
                rope_scaling = None
        sliding_window = hf.get("sliding_window")
        if model_type == "qwen2" and not hf.get("use_sliding_window", False):
            sliding_window = None
        eos = hf.get("eos_token_id")
        kwargs = dict(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=hf.get("num_key_value_heads") or num_heads,
            head_dim=head_dim,
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=float(rope_theta if rope_theta is not None else 10000.0),
            rope_scaling=tuple(sorted(rope_scaling.items())) if rope_scaling else None,
            max_position_embeddings=hf.get("max_position_embeddings", 2048),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            attention_bias=bool(hf.get("attention_bias", model_type == "qwen2")),
            mlp_bias=bool(hf.get("mlp_bias", False)),
            sliding_window=sliding_window,
            model_type=model_type,
            initializer_range=hf.get("initializer_range", 0.02),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
            pad_token_id=hf.get("pad_token_id"),
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    @classmethod
    def from_hf_json(cls, path: str | os.PathLike, **overrides) -> "ModelConfig":
        try:
            with open(path) as f:
                hf = json.load(f)
        except json.JSONDecodeError as e:
            raise ModelFileError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from e
        except FileNotFoundError as e:
            raise InputNotFoundError(f"{path}: model config.json not found") from e
        try:
            return cls.from_hf_dict(hf, **overrides)
        except UnsupportedArchitectureError as e:
            raise UnsupportedArchitectureError(f"{path}: {e}") from None
        except KeyError as e:
            raise ModelFileError(f"{path}: missing field {e.args[0]!r}") from e

    def to_hf_dict(self) -> dict[str, Any]:
        """The `config.json` transformers needs to load an exported checkpoint."""
        hf = {
            "architectures": [SUPPORTED_MODEL_TYPES[self.model_type]],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling_dict,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "initializer_range": self.initializer_range,
            "torch_dtype": self.param_dtype,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id) if isinstance(self.eos_token_id, tuple)
                            else self.eos_token_id,
            "pad_token_id": self.pad_token_id,
        }
        if self.model_type == "llama":
            hf.update(attention_bias=self.attention_bias, mlp_bias=self.mlp_bias)
        elif self.model_type == "mistral":
            hf.update(sliding_window=self.sliding_window)
        elif self.model_type == "qwen2":
            hf.update(use_sliding_window=self.sliding_window is not None,
                      sliding_window=self.sliding_window)
        return hf
