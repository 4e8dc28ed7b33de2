"""What every preset shares: where its runs go, which phase starts from which earlier
run (`START_FROM`), and the one function (`finish`) that applies a preset's per-phase
table and wires those run directories."""

from __future__ import annotations

import os
from typing import Mapping

import ml_collections

from sjjax.errors import ConfigError
from sjjax.phases import PHASE_NAMES

# The run whose model a phase starts from (`runs/<preset>/<that phase>`); the phases not
# listed (sft, jsft, generate) start from the preset's own model.source.
START_FROM = {
    "dpo": "sft",                # the offline DPO baseline: from the SFT baseline
    "self_judge": "jsft",        # policy, reference and judge: the Judge Model
    "tournament": "self_judge",  # self-rejection with the self-trained policy
    "evaluate": "self_judge",
}


def runs_root(preset: str) -> str:
    """The directory under which every phase of `preset` writes its run."""
    return os.path.join("runs", preset)


def set_fields(c: ml_collections.ConfigDict, fields: Mapping, where: str) -> None:
    """Sets dotted keys ("train.learning_rate") of c; one the schema lacks is an error."""
    for key, value in fields.items():
        node, *path = c, *key.split(".")
        for part in path[:-1]:
            node = node.get(part)
            if not isinstance(node, ml_collections.ConfigDict):
                break
        if not isinstance(node, ml_collections.ConfigDict) or path[-1] not in node:
            raise ConfigError(f"{where}: config.{key} is not a field of sjjax.config.base_config")
        node[path[-1]] = value


def finish(c: ml_collections.ConfigDict, preset: str, phase: str,
           phase_overrides: Mapping[str, Mapping]) -> ml_collections.ConfigDict:
    """A preset's last step: its per-phase table (`phase_overrides[phase]`: dotted key ->
    value), then the run directories: runs/<preset>/<phase>, the shared TFDS directory,
    and the model the phase starts from (START_FROM)."""
    unknown = sorted(set(phase_overrides) - set(PHASE_NAMES))
    if unknown:
        raise ConfigError(f"preset {preset!r}: PHASE_OVERRIDES has unknown phases {unknown}")
    set_fields(c, phase_overrides.get(phase, {}), f"preset {preset!r}, phase {phase!r}")
    root = runs_root(preset)
    c.run_dir = os.path.join(root, phase)
    c.data.tfds_dir = os.path.join(root, "tfds")
    if phase in START_FROM:
        c.model.source = os.path.join(root, START_FROM[phase])
    return c


def synthetic_source(tasks: dict, n_sft: int, n_pairs: int, n_prompts: int,
                     wrong_fraction: float, seed: int = 0, split: str = "train") -> dict:
    """A config.data.sources entry for the synthetic suite (sjjax.data.synthetic):
    `tasks` names its families, levels and (optionally) directions."""
    source = dict(format="synthetic", seed=seed, n_sft=n_sft, n_pairs=n_pairs,
                  n_prompts=n_prompts, wrong_fraction=wrong_fraction,
                  families=tuple(tasks["families"]), levels=tuple(tasks["levels"]), split=split)
    if tasks.get("directions"):
        source["directions"] = dict(tasks["directions"])
    return source
