"""One module per phase, each exposing `run(config)` (and optionally `validate(config)`)."""

from __future__ import annotations

import importlib

# phase name -> module in sjjax.phases
PHASES = {
    "generate": "generate",
    "jsft": "train",
    "sft": "train",
    "dpo": "train",
    "self_judge": "self_judge",
    "tournament": "tournament",
    "evaluate": "evaluate",
    "pipeline": "pipeline",
}


def phase_module(phase: str):
    from sjjax.errors import ConfigError
    if phase not in PHASES:
        raise ConfigError(f"config.phase: {phase!r} is not one of {sorted(PHASES)}")
    return importlib.import_module(f"sjjax.phases.{PHASES[phase]}")


def validate_phase_config(config) -> None:
    check = getattr(phase_module(config.phase), "validate", None)
    if check is not None:
        check(config)


def run_phase(config):
    """Validates the whole config (before anything compiles), then runs its phase."""
    from sjjax.config import validate
    validate(config)
    return phase_module(config.phase).run(config)
