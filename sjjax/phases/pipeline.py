"""The whole method and its baselines under one preset (`configs/pipeline.py`):

    sft -> dpo (offline, from sft)                         baselines
    jsft -> self_judge #1 -> self_judge #2 ...             Self-Judge (each iteration's
                                                           policy is the next reference/judge)
    jsft -> self_judge_oracle                              control (oracle_control=True):
                                                           iteration 1 with the oracle judge
    evaluate every model; tournament sweep on the last; report (Markdown + plots)

Each phase's config is the preset's (`sjjax.presets.make`), with its run directory under
config.root, the model it starts from, and the user's `steps` and `overrides`. A phase
whose final checkpoint exists is skipped, and one that was interrupted resumes, so
rerunning the command continues the pipeline where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import ml_collections

from sjjax import presets
from sjjax.checkpoint import has_final
from sjjax.config import ConfigError, save_resolved
from sjjax.phases import PHASE_NAMES, phase_module, validate_phase_config

log = logging.getLogger("sjjax")

# The phases the pipeline runs (and config.overrides may name).
RUN_PHASES = tuple(p for p in PHASE_NAMES if p != "pipeline")
# The field config.steps.<phase> sets.
STEPS_FIELD = {"sft": "train.steps", "dpo": "train.steps", "jsft": "train.steps",
               "self_judge": "self_judge.steps"}


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
    # The control: self-judge iteration 1 again (same start, seed and settings) with the
    # task oracle as judge -> <root>/self_judge_oracle, evaluated and in the report beside
    # the model's own judge (synthetic presets only: the oracle needs checkable prompts).
    c.oracle_control = False
    c.evaluate = True
    c.tournament_sizes = (1, 2, 4, 8, 16)
    # Training steps per phase (0 = the preset's): --config.steps.jsft=300
    c.steps = ml_collections.ConfigDict({phase: 0 for phase in STEPS_FIELD})
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
        if phase not in RUN_PHASES:
            raise ConfigError(f"config.overrides.{phase}: not a phase ({RUN_PHASES})")
    for _, phase_config_ in plan(config):
        validate_phase_config(phase_config_)


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of the pipeline."""
    name: str                  # in logs and pipeline.json
    phase: str
    run_dir: str
    source: str | None = None  # the model it starts from; None: the preset's
    fields: dict = dataclasses.field(default_factory=dict)  # dotted key -> value


def runs(config) -> list[Run]:
    """The runs, in order, and their wiring: the run directory each starts from."""
    root = config.root

    def at(name: str) -> str:
        return f"{root}/{name}"

    self_samples = config.get("self_sample_judge_data", False)
    out = []
    if config.baselines or self_samples:
        out.append(Run("sft", "sft", at("sft")))
    if config.baselines:
        out.append(Run("dpo", "dpo", at("dpo"), at(presets.START_FROM["dpo"])))
    jsft_fields = ({"self_samples.enabled": True, "self_samples.model": at("sft")}
                   if self_samples else {})
    out.append(Run("jsft", "jsft", at("jsft"), fields=jsft_fields))
    # Iteration k starts from (and is judged by) iteration k-1's policy; #1 from the JM.
    previous = at(presets.START_FROM["self_judge"])
    for k in range(1, config.iterations + 1):
        name = f"self_judge_{k}"
        out.append(Run(name, "self_judge", at(name), previous, {"seed": config.seed + k}))
        previous = at(name)
    last_policy = out[-1].name  # the N-sweep's second model (the control gets none)
    if config.get("oracle_control", False):
        out.append(Run("self_judge_oracle", "self_judge", at("self_judge_oracle"),
                       at(presets.START_FROM["self_judge"]),
                       {"seed": config.seed + 1, "self_judge.judge": "oracle"}))
    if config.evaluate:
        models = [r.name for r in out]  # every model trained above
        # "base": the model JSFT started from (pretrained, or an untrained tiny model).
        sources = {"base": presets.make("jsft", config.preset).model.source,
                   **{m: at(m) for m in models}}
        for name, source in sources.items():
            # The N-sweep for the Judge Model and for the last self-trained policy.
            sizes = tuple(config.tournament_sizes) if name in ("jsft", last_policy) else ()
            out.append(Run(f"eval_{name}", "evaluate", at(f"eval/{name}"), source,
                           {"evaluate.tournament_sizes": sizes, "evaluate.label": name}))
    return out


def phase_config(config, r: Run) -> ml_collections.ConfigDict:
    """The preset's config of r.phase, wired into the pipeline (seed, run dirs, the model
    it starts from, r.fields), then the user's config.steps and config.overrides."""
    c = presets.make(r.phase, config.preset)
    c.seed = config.seed
    c.data.tfds_dir = os.path.join(config.root, "tfds")
    c.run_dir = r.run_dir
    if r.source is not None:
        c.model.source = r.source
    _apply_overrides(c, r.fields)
    num_steps = config.steps.get(r.phase, 0) if "steps" in config else 0
    if num_steps:
        _apply_overrides(c, {STEPS_FIELD.get(r.phase, "train.steps"): num_steps})
    overrides = config.overrides.get(r.phase)
    _apply_overrides(c, overrides.to_dict() if hasattr(overrides, "to_dict") else overrides,
                     f".{r.phase}")
    return c


def plan(config) -> list[tuple[str, ml_collections.ConfigDict]]:
    """The ordered (name, config) list the pipeline runs."""
    return [(r.name, phase_config(config, r)) for r in runs(config)]


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


def _done(name: str, c) -> bool:
    if name.startswith("eval_"):
        return os.path.exists(os.path.join(c.run_dir, "eval.json"))
    return has_final(c.run_dir)


def run(config):
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
