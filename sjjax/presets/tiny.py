"""tiny: a from-scratch ~3M-parameter model (the architecture of `config.model.tiny`) on
the synthetic suite; every phase runs on a CPU in minutes."""

from __future__ import annotations

import ml_collections

from sjjax.config import base_config
from sjjax.data.templates import COMPACT_JUDGE_TEMPLATE
from sjjax.presets.common import finish, synthetic_source

# Families and levels of the synthetic suite. The tiny model is trained from scratch in
# minutes: its tasks are those whose answers a judge can verify by a first-order property
# of the two candidates (the larger number, a sorted list). With both directions asked,
# or with membership/count/arithmetic, a judge this small stayed at chance after hundreds
# of steps (measured; see docs/results.md).
TASKS = dict(families=("compare", "minmax", "sort"), levels=(1, 2),
             directions={"compare": ("larger",), "minmax": ("largest",),
                         "sort": ("ascending",)})

# What differs by phase (dotted key -> value), over the settings of get_config.
PHASE_OVERRIDES = {
    "dpo": {
        "train.learning_rate": 1e-4,
        "train.schedule": "constant",
        "train.warmup_ratio": 0.1,
    },
    "self_judge": {
        "train.learning_rate": 5e-5,
        "train.schedule": "constant",
        "train.warmup_ratio": 0.1,
        "self_judge.prompts_per_step": 32,
        "self_judge.steps": 40,
        "checkpoint.every_steps": 10,
    },
}


def get_config(phase: str) -> ml_collections.ConfigDict:
    c = base_config(phase)
    c.model.source = "tiny"          # from scratch (sft, jsft); later phases: START_FROM
    c.data.sources = (synthetic_source(TASKS, n_sft=2000, n_pairs=1000, n_prompts=256,
                                       wrong_fraction=0.1),)
    c.data.max_length = 160
    c.data.buckets = (64, 96, 128, 160)
    c.data.batch_size = 32
    c.judge.templates = COMPACT_JUDGE_TEMPLATE  # short prompts for a small model
    c.judge.max_length = 256
    c.judge.batch_size = 32
    c.train.learning_rate = 1e-3
    c.train.warmup_ratio = 0.05
    c.train.weight_decay = 0.01
    c.train.loss_normalization = "example"
    c.sampling.max_new_tokens = 24
    c.sampling.batch_size = 32
    c.checkpoint.every_steps = 100
    return finish(c, "tiny", phase, PHASE_OVERRIDES)
