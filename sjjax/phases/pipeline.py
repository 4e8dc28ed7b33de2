"""The whole method and its baselines under one preset (`configs/pipeline.py`):

    sft -> dpo (offline, from sft)                         baselines
    jsft -> self_judge #1 -> self_judge #2 ...             Self-Judge (each iteration's
                                                           policy is the next reference/judge)
    evaluate every model; tournament sweep on the last; report (Markdown + plots)

Each phase writes its own run directory under config.root; a phase whose final
checkpoint exists is skipped, and one that was interrupted resumes, so rerunning
the command continues the pipeline where it stopped.
"""

from __future__ import annotations

import json
import logging
import os

import ml_collections

from sjjax import presets
from sjjax.checkpoint import has_final
from sjjax.config import ConfigError, save_resolved

log = logging.getLogger("sjjax")


def default_pipeline_config(preset: str = "tiny") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.phase = "pipeline"
    c.preset = preset
    c.root = presets.runs_root(preset)
    c.run_dir = c.get_ref("root")
    c.seed = 0
    c.iterations = 2          # self-judge iterations after JSFT
    c.baselines = True        # also train SFT and offline DPO on the same data
    # JSFT's judge data also gets pairs of the SFT model's own samples, labelled by the
    # oracle (synthetic presets; beyond the paper). Runs the SFT phase first.
    c.self_sample_judge_data = preset in ("tiny", "smollm2")
    c.evaluate = True
    c.tournament_sizes = (1, 2, 4, 8, 16)
    # Training steps per phase (0 = the preset's): --config.steps.jsft=300
    c.steps = ml_collections.ConfigDict(dict(sft=0, dpo=0, jsft=0, self_judge=0))
    # Any other per-phase change, as nested dicts in a config file:
    # c.overrides = {"jsft": {"train": {"learning_rate": 3e-4}}, "self_judge": {...}}
    c.overrides = ml_collections.ConfigDict()
    return c


def validate(config) -> None:
    if config.preset not in presets.PRESETS:
        raise ConfigError(f"config.preset: {config.preset!r} not in {presets.PRESETS}")
    if config.iterations < 0:
        raise ConfigError("config.iterations: must be >= 0")
    for phase in config.overrides:
        if phase not in presets.PHASE_NAMES:
            raise ConfigError(f"config.overrides.{phase}: not a phase ({presets.PHASE_NAMES})")
    for phase, config_ in plan(config):
        _validate_phase(config_)


def _validate_phase(c):
    from sjjax.config import validate as validate_config
    validate_config(c)


def _apply_overrides(c: ml_collections.ConfigDict, overrides, where: str = "") -> None:
    """Merges nested dicts (or "a.b" keys) into c; an unknown field is an error."""
    for key, value in (overrides or {}).items():
        head, _, rest = key.partition(".")
        if head not in c:
            raise ConfigError(f"config.overrides{where}: no field {head!r}")
        if rest:
            _apply_overrides(c[head], {rest: value}, f"{where}.{head}")
        elif isinstance(c[head], ml_collections.ConfigDict) and hasattr(value, "items"):
            _apply_overrides(c[head], value, f"{where}.{head}")
        else:
            c[head] = value


def phase_config(config, phase: str, run_dir: str, source: str | None = None,
                 **fields) -> ml_collections.ConfigDict:
    c = presets.make(phase, config.preset)
    c.seed = config.seed
    shared_tfds = os.path.join(config.root, "tfds")
    c.data.tfds_dir = shared_tfds
    c.run_dir = run_dir
    if source is not None:
        c.model.source = source
    for key, value in fields.items():
        _apply_overrides(c, {key: value})
    steps = config.steps.get(phase, 0) if "steps" in config else 0
    if steps:
        _apply_overrides(c, {"self_judge.steps" if phase == "self_judge" else "train.steps":
                             steps})
    overrides = config.overrides.get(phase)
    _apply_overrides(c, overrides.to_dict() if hasattr(overrides, "to_dict") else overrides,
                     f".{phase}")
    return c


def plan(config) -> list[tuple[str, ml_collections.ConfigDict]]:
    """The ordered (name, config) list the pipeline runs."""
    root = config.root
    steps = []
    self_samples = config.get("self_sample_judge_data", False)
    if config.baselines or self_samples:
        steps.append(("sft", phase_config(config, "sft", f"{root}/sft")))
    if config.baselines:
        steps.append(("dpo", phase_config(config, "dpo", f"{root}/dpo", f"{root}/sft")))
    jsft_fields = ({"self_samples.enabled": True, "self_samples.model": f"{root}/sft"}
                   if self_samples else {})
    steps.append(("jsft", phase_config(config, "jsft", f"{root}/jsft", **jsft_fields)))
    previous = f"{root}/jsft"
    for k in range(1, config.iterations + 1):
        run_dir = f"{root}/self_judge_{k}"
        steps.append((f"self_judge_{k}", phase_config(config, "self_judge", run_dir, previous,
                                                       seed=config.seed + k)))
        previous = run_dir
    if config.evaluate:
        models = (["sft", "dpo"] if config.baselines else
                  ["sft"] if self_samples else []) + ["jsft"] + [
            f"self_judge_{k}" for k in range(1, config.iterations + 1)]
        # "base": the model JSFT started from (pretrained, or an untrained tiny model).
        base_source = presets.make("jsft", config.preset).model.source
        sources = {"base": base_source, **{m: f"{root}/{m}" for m in models}}
        for name, source in sources.items():
            # The N-sweep for the Judge Model and for the last self-trained policy.
            sizes = tuple(config.tournament_sizes) if name in ("jsft", models[-1]) else ()
            steps.append((f"eval_{name}", phase_config(
                config, "evaluate", f"{root}/eval/{name}", source,
                **{"evaluate.tournament_sizes": sizes, "evaluate.label": name})))
    return steps


def _done(name: str, c) -> bool:
    if name.startswith("eval_"):
        return os.path.exists(os.path.join(c.run_dir, "eval.json"))
    return has_final(c.run_dir)


def run(config):
    from sjjax.phases import phase_module
    from sjjax.report import write_report
    os.makedirs(config.root, exist_ok=True)
    save_resolved(config, config.root)
    done = []
    for name, c in plan(config):
        if _done(name, c):
            log.info("pipeline: %s already done (%s)", name, c.run_dir)
        else:
            log.info("pipeline: running %s -> %s", name, c.run_dir)
            phase_module(c.phase).run(c)
        done.append(name)
    report = None
    if config.evaluate:
        report = write_report(config.root)
        print(f"[pipeline] report: {report}", flush=True)
    with open(os.path.join(config.root, "pipeline.json"), "w") as f:
        json.dump({"phases": done, "report": report}, f, indent=2)
    return report
