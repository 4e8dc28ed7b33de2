"""The architecture the plan is for: `config.model.source` resolved to a `ModelConfig`
without loading any weights.

The source is resolved by the phases' own resolver (`sjjax.phases.common.resolve_source`);
the architecture is then read from what that names (an HF `config.json`, an sjjax run
directory's `model/config.json`, GGUF metadata) with the readers of `sjjax.model`. On top
of that the planner accepts what the phases do not need: a named architecture of
`sjjax.model.presets` ('llama2_7b'; 'smollm2' is the SmolLM2-135M architecture, so no
download is needed), and a path that is not on this machine but is named after one
(/models/llama2_7b, gs://bucket/runs/mistral-7b/sft), so that pod configs plan anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import os

from sjjax.checkpoint import is_run_dir
from sjjax.errors import ConfigError
from sjjax.model.config import ModelConfig
from sjjax.model.presets import architecture_names, get_architecture, is_architecture
from sjjax.phases.common import resolve_source


def architecture(source: str, overrides: dict, tiny: dict | None = None
                 ) -> tuple[ModelConfig, str]:
    """-> (the architecture named by `source`, where it came from, for the report).

    `overrides` (dtype, param_dtype, remat) replace those fields; `tiny` is
    config.model.tiny, used when the source is 'tiny'.
    """
    if is_architecture(source):
        return get_architecture(source, **overrides), f"preset {source}"
    local = "://" not in source and os.path.exists(os.path.expanduser(source))
    name = None if local or source == "tiny" else _architecture_named_by(source)
    if name == "tiny":
        return (tiny_architecture(tiny, overrides),
                f"config.model.tiny (named by {source}, which is not on this machine)")
    if name:
        return (get_architecture(name, **overrides),
                f"preset {name} (named by {source}, which is not on this machine)")
    if source == "tiny":
        return tiny_architecture(tiny, overrides), source
    return architecture_at(source, overrides), source


def tiny_architecture(tiny: dict | None, overrides: dict) -> ModelConfig:
    """config.model.tiny as a ModelConfig: vocab `vocab_size` (default 1024); keys that
    are not ModelConfig fields (tokenizer_seed, ...) are ignored."""
    tiny = dict(tiny or {})
    vocab = tiny.pop("vocab_size", 1024)
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    tiny = {k: v for k, v in tiny.items() if k in known}
    return ModelConfig(vocab_size=int(vocab), **{**tiny, **overrides})


def architecture_at(source: str, overrides: dict) -> ModelConfig:
    """The architecture of an HF directory or config.json, an sjjax run directory or a
    .gguf file, read from its metadata (no weights are read)."""
    try:
        path = resolve_source(os.path.expanduser(source))
    except ConfigError as e:
        raise ConfigError(_not_an_architecture(source)) from e
    if "://" not in path and is_run_dir(path):  # an sjjax run directory
        path = os.path.join(path, "model")
    if path.endswith(".gguf") and os.path.isfile(path):
        import gguf
        from sjjax.model.gguf_io import config_from_gguf
        return config_from_gguf(gguf.GGUFReader(path), path, **overrides)
    hf_json = os.path.join(path, "config.json") if os.path.isdir(path) else path
    if os.path.isfile(hf_json) and hf_json.endswith(".json"):
        with open(hf_json) as f:
            data = json.load(f)
        if "model_type" in data:
            return ModelConfig.from_hf_json(hf_json, **overrides)
        raise ConfigError(f"config.model.source: {hf_json} is not a Hugging Face config.json "
                          f"(no model_type); point the planner at a preset or a HF directory")
    raise ConfigError(_not_an_architecture(source))


def _not_an_architecture(source: str) -> str:
    return (f"config.model.source: {source!r} is not a preset "
            f"({', '.join(architecture_names())}), 'smollm2', 'tiny', a HF directory "
            f"or a .gguf file")


def _architecture_named_by(path: str) -> str | None:
    """The last component of a path that names an architecture or 'tiny', alone or
    with a `_<setup>` suffix (runs/llama2_7b/jsft, runs/llama2_7b_uf/jsft,
    /models/Llama2-7b, gs://bucket/runs/smollm2/jsft)."""
    for part in reversed(path.replace("://", "/").split("/")):
        name = part.lower().replace("-", "_")
        if is_architecture(name) or name == "tiny":
            return name
        prefixes = [a for a in architecture_names() if name.startswith(a + "_")]
        if prefixes:
            return max(prefixes, key=len)
    return None
