"""Named setups ("presets") for every phase: the configs in configs/ are thin calls to
`make(phase, preset)`, so one preset means the same data, model and budget in every
phase. One module per preset, each with `get_config(phase)`: it starts from
`sjjax.config.base_config(phase)`, sets what the preset changes, and ends with
`common.finish`, which applies the preset's per-phase table (`PHASE_OVERRIDES`) and
wires the run directories (`common.START_FROM`).

    tiny          tiny.py        from-scratch ~3M-parameter model on the synthetic suite
                                 (CPU, minutes)
    tiny_check    tiny.py        the same with a judge that checks, then decides
    smollm2       smollm2.py     SmolLM2-135M-Instruct on the synthetic suite (CPU: an
                                 hour or two)
    smollm2_hh    smollm2_hh.py  SmolLM2-135M-Instruct on HH-RLHF (../shared/data)
    llama2_7b     paper.py       the paper's settings (Llama-2-7B on HH-RLHF, TPU/GPU), as
                                 its official code runs them (docs/paper_fidelity.md)
    llama2_7b_uf, llama2_7b_uf_pr   paper.py: Llama-2-7B on UltraFeedback (JSFT; JM-PR)
    llama3_8b, mistral_7b        paper.py: the HH recipe on other 7-8B models

On TPU slices, configs/pod.py puts the 7-8B presets on a mesh (docs/scale.md).
"""

from __future__ import annotations

import functools

import ml_collections

from sjjax.errors import ConfigError
from sjjax.phases import PHASE_NAMES
from sjjax.presets import paper, smollm2, smollm2_hh, tiny
from sjjax.presets.common import START_FROM, runs_root, set_fields, synthetic_source  # noqa: F401

_GET_CONFIG = {
    "tiny": tiny.get_config,
    "tiny_check": functools.partial(tiny.get_config, check=True),
    "smollm2": smollm2.get_config,
    "smollm2_hh": smollm2_hh.get_config,
    **{model: functools.partial(paper.get_config, model=model) for model in paper.PRESETS},
}
PRESETS = tuple(_GET_CONFIG)


def make(phase: str, preset: str = "tiny") -> ml_collections.ConfigDict:
    """The config of `phase` under `preset`."""
    if preset not in _GET_CONFIG:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if phase not in PHASE_NAMES or phase == "pipeline":
        raise ConfigError(f"config.phase: {phase!r} has no preset config; choose from "
                          f"{', '.join(p for p in PHASE_NAMES if p != 'pipeline')} "
                          f"(the pipeline: configs/pipeline.py)")
    return _GET_CONFIG[preset](phase)
