"""smollm2: SmolLM2-135M-Instruct on the synthetic suite (CPU: an hour or two).

`recipe(phase)` holds the SmolLM2 settings this preset and smollm2_hh share (model,
LoRA, optimizer, budget, and their per-phase table `PHASE_OVERRIDES`); `get_config`
adds the synthetic data and its evaluation sizes.
"""

from __future__ import annotations

import ml_collections

from sjjax.config import base_config
from sjjax.presets.common import finish, synthetic_source

TASKS = dict(families=("compare", "arithmetic", "membership", "sort", "minmax", "count"),
             levels=(1, 2))

# What differs by phase (dotted key -> value), over recipe(); both SmolLM2 presets.
PHASE_OVERRIDES = {
    "dpo": {
        "train.learning_rate": 5e-6,
    },
    "self_judge": {
        "lora.enabled": True,            # adapters on every projection (recipe)
        "train.learning_rate": 1e-4,     # LoRA adapters (r=8)
        "train.schedule": "constant",
        "train.warmup_ratio": 0.1,
        "self_judge.prompts_per_step": 8,
        "self_judge.steps": 60,
        "checkpoint.every_steps": 5,
    },
}


def recipe(phase: str) -> ml_collections.ConfigDict:
    """The SmolLM2-135M-Instruct settings of both SmolLM2 presets (data: the preset's)."""
    c = base_config(phase)
    c.model.source = "smollm2"       # the fetched asset (sft, jsft); later phases: START_FROM
    c.lora.targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                      "down_proj")
    c.train.learning_rate = 5e-5     # full fine-tuning of a 135M model for one short epoch
    c.judge.max_length = 512
    c.checkpoint.every_steps = 25
    return c


def get_config(phase: str) -> ml_collections.ConfigDict:
    c = recipe(phase)
    c.data.sources = (synthetic_source(TASKS, n_sft=50, n_pairs=40, n_prompts=64,
                                       wrong_fraction=0.1),)
    c.data.max_length = 384
    c.data.buckets = (128, 192, 256, 384)
    c.sampling.max_new_tokens = 48
    c.self_samples.num_prompts = 256
    c.self_samples.samples_per_prompt = 4
    c.evaluate.num_pairs = 128
    c.evaluate.tournament_prompts = 32
    return finish(c, "smollm2", phase, PHASE_OVERRIDES)
