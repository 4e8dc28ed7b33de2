"""tiny: a from-scratch ~3M-parameter model (the architecture of `config.model.tiny`) on
the synthetic suite; every phase runs on a CPU in minutes.

tiny_check: the same with a judge that writes its check of both responses before its
decision, each check first copying the question's numbers ("A: The question has 58,
23, 61, 85, 42. 83 is not in the question.\nB: The question has ... 85 is in the question
and the largest.\nAnswer: B"; `COMPACT_JUDGE_TEMPLATE_CHECK`): every judgment of its
data carries the responses' checks (`synthetic.explain(..., restate=True)`), and every
phase judges that way. Not the paper's JM-PR (whose rationale follows the decision);
docs/results.md."""

from __future__ import annotations

import ml_collections

from sjjax.config import base_config
from sjjax.data.templates import COMPACT_JUDGE_TEMPLATE, COMPACT_JUDGE_TEMPLATE_CHECK
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


def get_config(phase: str, check: bool = False) -> ml_collections.ConfigDict:
    """The tiny preset's config of `phase`; check=True: tiny_check (module docstring)."""
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
    if check:
        c.data.sources = tuple({**s, "rationales": True, "restate": True}
                               for s in c.data.sources)
        c.self_samples.rationales = c.self_samples.restate = True
        c.judge.templates = COMPACT_JUDGE_TEMPLATE_CHECK
        # Two checks with the numbers copied are up to 105 tokens on levels 1-2 (127 on
        # level 3); the judgment examples up to 220 tokens on levels 1-2.
        c.judge.check_tokens = 128
        c.data.max_length = 256
        c.data.buckets = (64, 96, 128, 160, 192, 256)
    return finish(c, "tiny_check" if check else "tiny", phase, PHASE_OVERRIDES)
