"""The phases, defined once: each name, the module that runs it (exposing `run(config)`
and optionally `validate(config)`), and what it does with a model, which the planner
(`sjjax.plan`) and the config checks read from here."""

from __future__ import annotations

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class PhaseInfo:
    module: str               # sjjax.phases.<module>
    trains: bool = False      # takes optimizer steps
    preference: bool = False  # chosen + rejected rows and a frozen reference (DPO-shaped)
    samples: bool = False     # generates with the sampler
    judges: bool = False      # runs self-judgments


PHASES = {
    "sft": PhaseInfo("train", trains=True),
    "jsft": PhaseInfo("train", trains=True),
    "dpo": PhaseInfo("train", trains=True, preference=True),
    "self_judge": PhaseInfo("self_judge", trains=True, preference=True, samples=True,
                            judges=True),
    "tournament": PhaseInfo("tournament", samples=True, judges=True),
    "evaluate": PhaseInfo("evaluate", samples=True, judges=True),
    "generate": PhaseInfo("generate", samples=True),
    # every phase above in turn; the planner plans its most demanding one
    "pipeline": PhaseInfo("pipeline", trains=True, preference=True, samples=True,
                          judges=True),
}
PHASE_NAMES = tuple(PHASES)
# The phases trained on a fixed data set (the examples `sjjax.data.datasets` builds).
DATA_PHASES = ("jsft", "sft", "dpo")


def phase_module(phase: str):
    from sjjax.errors import ConfigError
    if phase not in PHASES:
        raise ConfigError(f"config.phase: {phase!r} is not one of {sorted(PHASES)}")
    return importlib.import_module(f"sjjax.phases.{PHASES[phase].module}")


def validate_phase_config(config) -> None:
    """The whole check, before anything compiles: the keys every phase shares
    (`sjjax.config.validate`), then the phase module's own `validate`."""
    from sjjax import config as config_lib  # not at the top: keeps this registry light
    config_lib.validate(config)
    check = getattr(phase_module(config.phase), "validate", None)
    if check is not None:
        check(config)


def run_phase(config):
    """Validates the whole config (before anything compiles), then runs its phase."""
    validate_phase_config(config)
    return phase_module(config.phase).run(config)
