"""Hugging Face checkpoints: safetensors directories <-> sjjax parameter dicts.

The name and layout mapping lives in one table (`_layer_tensors`), used in both
directions, so import and export cannot drift apart:

    HF  q_proj.weight [H*Dh, d]   <->  sjjax layers/attn/q_proj/kernel [L, d, H, Dh]
    HF  o_proj.weight [d, H*Dh]   <->  sjjax layers/attn/o_proj/kernel [L, H, Dh, d]
    HF  *_proj.weight [out, in]   <->  sjjax .../kernel [L, in, out]
"""

from __future__ import annotations

import json
import os
from typing import Callable, Iterator, Mapping

import jax
import numpy as np

from sjjax.errors import InputNotFoundError, ModelFileError, SjjaxError
from sjjax.model.config import ModelConfig

SAFETENSORS_INDEX = "model.safetensors.index.json"
# Buffers that some checkpoints carry but that are recomputed here.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class CheckpointMismatchError(SjjaxError, ValueError):
    """A checkpoint's tensors do not fit the model config."""


def _layer_tensors(cfg: ModelConfig):
    """(hf suffix, sjjax path, hf shape, to_sjjax, to_hf) for one decoder layer."""
    d, h, k, dh, f = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                      cfg.intermediate_size)
    t = np.transpose

    def proj_in(heads):   # [heads*Dh, d] <-> [d, heads, Dh]
        return (lambda w: t(w).reshape(d, heads, dh), lambda p: t(p.reshape(d, heads * dh)))

    specs = [
        ("input_layernorm.weight", ("input_norm", "scale"), (d,), None, None),
        ("post_attention_layernorm.weight", ("post_attn_norm", "scale"), (d,), None, None),
        ("self_attn.q_proj.weight", ("attn", "q_proj", "kernel"), (h * dh, d), *proj_in(h)),
        ("self_attn.k_proj.weight", ("attn", "k_proj", "kernel"), (k * dh, d), *proj_in(k)),
        ("self_attn.v_proj.weight", ("attn", "v_proj", "kernel"), (k * dh, d), *proj_in(k)),
        ("self_attn.o_proj.weight", ("attn", "o_proj", "kernel"), (d, h * dh),
         lambda w: t(w).reshape(h, dh, d), lambda p: t(p.reshape(h * dh, d))),
        ("mlp.gate_proj.weight", ("mlp", "gate_proj", "kernel"), (f, d), t, t),
        ("mlp.up_proj.weight", ("mlp", "up_proj", "kernel"), (f, d), t, t),
        ("mlp.down_proj.weight", ("mlp", "down_proj", "kernel"), (d, f), t, t),
    ]
    if cfg.attention_bias:
        for name, heads in (("q_proj", h), ("k_proj", k), ("v_proj", k)):
            specs.append((f"self_attn.{name}.bias", ("attn", name, "bias"), (heads * dh,),
                          lambda b, n=heads: b.reshape(n, dh), lambda p: p.reshape(-1)))
    if cfg.output_bias:
        specs.append(("self_attn.o_proj.bias", ("attn", "o_proj", "bias"), (d,), None, None))
    if cfg.mlp_bias:
        for name, size in (("gate_proj", f), ("up_proj", f), ("down_proj", d)):
            specs.append((f"mlp.{name}.bias", ("mlp", name, "bias"), (size,), None, None))
    return specs


def _global_tensors(cfg: ModelConfig):
    specs = [
        ("model.embed_tokens.weight", ("embedder",), (cfg.vocab_size, cfg.hidden_size),
         None, None),
        ("model.norm.weight", ("final_norm", "scale"), (cfg.hidden_size,), None, None),
    ]
    if not cfg.tie_word_embeddings:
        specs.append(("lm_head.weight", ("lm_head", "kernel"), (cfg.vocab_size, cfg.hidden_size),
                      np.transpose, np.transpose))
    return specs


def _set(tree: dict, path: tuple[str, ...], value):
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _get(tree: Mapping, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def hf_tensors_to_params(get: Callable[[str], np.ndarray], names: set[str],
                         cfg: ModelConfig, source: str = "checkpoint") -> dict:
    """Builds the sjjax parameter dict (numpy, param_dtype) from HF-named tensors.

    `get(name)` returns a tensor; `names` is the set of names the checkpoint holds.
    Missing, misshapen and unexpected tensors raise `CheckpointMismatchError`
    naming the tensor (and both shapes).
    """
    dtype = cfg.weight_dtype
    used: set[str] = set()

    def fetch(name, expected_shape, convert):
        if name not in names:
            raise CheckpointMismatchError(f"{source}: tensor {name!r} is missing "
                                          f"(expected shape {expected_shape})")
        array = get(name)
        if tuple(array.shape) != tuple(expected_shape):
            raise CheckpointMismatchError(
                f"{source}: tensor {name!r} has shape {tuple(array.shape)} but the config "
                f"expects {tuple(expected_shape)}")
        used.add(name)
        array = convert(array) if convert else array
        return np.asarray(array).astype(dtype)

    params: dict = {}
    for name, path, shape, convert, _ in _global_tensors(cfg):
        _set(params, path, fetch(name, shape, convert))
    for suffix, path, shape, convert, _ in _layer_tensors(cfg):
        stacked = [fetch(f"model.layers.{i}.{suffix}", shape, convert)
                   for i in range(cfg.num_layers)]
        _set(params, ("layers",) + path, np.stack(stacked))
    unexpected = sorted(n for n in names - used if not n.endswith(_IGNORED_SUFFIXES)
                        and not (cfg.tie_word_embeddings and n == "lm_head.weight"))
    if unexpected:
        shown = ", ".join(unexpected[:5]) + (" ..." if len(unexpected) > 5 else "")
        raise CheckpointMismatchError(
            f"{source}: {len(unexpected)} tensor(s) the config has no place for: {shown} "
            f"(num_hidden_layers={cfg.num_layers}, attention_bias={cfg.attention_bias}, "
            f"tie_word_embeddings={cfg.tie_word_embeddings})")
    return params


def params_to_hf_tensors(params: Mapping, cfg: ModelConfig) -> Iterator[tuple[str, np.ndarray]]:
    """Yields (HF name, numpy array in HF layout) for every parameter."""
    host = jax.tree.map(np.asarray, params)
    for name, path, _, _, to_hf in _global_tensors(cfg):
        array = _get(host, path)
        yield name, to_hf(array) if to_hf else array
    for suffix, path, _, _, to_hf in _layer_tensors(cfg):
        stacked = _get(host, ("layers",) + path)
        for i in range(cfg.num_layers):
            yield f"model.layers.{i}.{suffix}", to_hf(stacked[i]) if to_hf else stacked[i]


# --------------------------------------------------------------------------
# Safetensors directories
# --------------------------------------------------------------------------

class SafetensorsDir:
    """Reads tensors from `model.safetensors` or a sharded set with an index file."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        index = os.path.join(self.path, SAFETENSORS_INDEX)
        if os.path.exists(index):
            try:
                with open(index) as f:
                    weight_map = json.load(f)["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ModelFileError(f"{index}: not a safetensors index (a JSON object with "
                                     f"a 'weight_map'): {err}") from None
            self.files = {name: os.path.join(self.path, file) for name, file in weight_map.items()}
        else:
            files = sorted(f for f in os.listdir(self.path) if f.endswith(".safetensors"))
            if not files:
                raise InputNotFoundError(f"{self.path}: no *.safetensors files (is this a "
                                         f"Hugging Face model dir?)")
            self.files = {}
            for file in files:
                full = os.path.join(self.path, file)
                with _open_safetensors(full) as f:
                    self.files.update({name: full for name in f.keys()})

    def names(self) -> set[str]:
        return set(self.files)

    def get(self, name: str) -> np.ndarray:
        # The flax framework reads bfloat16, which safetensors' numpy reader cannot;
        # keep the array on the host so a large checkpoint never lands on one device.
        with jax.default_device(jax.devices("cpu")[0]):
            with _open_safetensors(self.files[name]) as f:
                try:
                    return np.asarray(f.get_tensor(name))
                except Exception as err:  # safetensors' own error type: truncated data
                    raise ModelFileError(f"{self.files[name]}: tensor {name!r} cannot be "
                                         f"read ({err}); the file is truncated or corrupt, "
                                         f"download it again") from None


def _open_safetensors(path: str):
    """safe_open, with a truncated or corrupt file (or a missing shard named by the
    index) reported as one line naming the file."""
    from safetensors import safe_open
    if not os.path.isfile(path):
        raise InputNotFoundError(f"{path}: safetensors file not found (named by "
                                 f"{SAFETENSORS_INDEX}?)")
    try:
        return safe_open(path, framework="flax")
    except Exception as err:  # safetensors_rust.SafetensorError: a bad header
        raise ModelFileError(f"{path}: not a readable safetensors file ({err}); the file is "
                             f"truncated or corrupt, download it again") from None


def load_hf_dir(path: str | os.PathLike, **config_overrides) -> tuple[ModelConfig, dict]:
    """Loads a Hugging Face model directory -> (config, numpy params)."""
    path = os.fspath(path)
    config_path = os.path.join(path, "config.json")
    if not os.path.exists(config_path):
        raise InputNotFoundError(f"{path}: no config.json (is this a Hugging Face model dir?)")
    cfg = ModelConfig.from_hf_json(config_path, **config_overrides)
    reader = SafetensorsDir(path)
    params = hf_tensors_to_params(reader.get, reader.names(), cfg, source=path)
    return cfg, params


def save_hf_dir(path: str | os.PathLike, cfg: ModelConfig, params: Mapping, tokenizer=None,
                dtype: str | None = None, max_shard_bytes: int = 4 << 30) -> None:
    """Writes config.json, safetensors (sharded with an index above max_shard_bytes)
    and, if given, the tokenizer files: a directory `from_pretrained` loads."""
    import jax.numpy as jnp
    from safetensors.flax import save_file  # writes bfloat16, unlike the numpy writer

    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    dtype = dtype or cfg.param_dtype
    shards: list[dict] = [{}]
    size = 0
    with jax.default_device(jax.devices("cpu")[0]):
        for name, array in params_to_hf_tensors(params, cfg):
            tensor = jnp.asarray(np.ascontiguousarray(array), dtype=dtype)
            if size and size + tensor.nbytes > max_shard_bytes:
                shards.append({})
                size = 0
            shards[-1][name] = tensor
            size += tensor.nbytes
    if len(shards) == 1:
        save_file(shards[0], os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, os.path.join(path, file), metadata={"format": "pt"})
            weight_map.update({name: file for name in shard})
        with open(os.path.join(path, SAFETENSORS_INDEX), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)
    hf = cfg.to_hf_dict()
    hf["torch_dtype"] = dtype
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(hf, f, indent=2)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
