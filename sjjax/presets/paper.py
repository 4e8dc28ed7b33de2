"""llama2_7b: the paper's settings (Llama-2-7B, TPU/GPU); llama3_8b and mistral_7b: the
same recipe on other 7-8B models. The weights: $SJJAX_MODEL_DIR, else /models/<preset>.

JSFT lr 2e-5 cosine, 3% warmup, max length 2048; self-training LoRA r=8 alpha=16,
lr 5e-6 constant with 10% warmup, beta 0.1, top-p 0.9, temperature 1.0, 768 new tokens.
On TPU slices, configs/pod.py puts these presets on a mesh (docs/scale.md).
"""

from __future__ import annotations

import os

import ml_collections

from sjjax.config import base_config
from sjjax.presets.common import finish

MODELS = ("llama2_7b", "llama3_8b", "mistral_7b")

# What differs by phase (dotted key -> value), over the settings of get_config. The
# paper's values are spelled out even where they are sjjax's defaults.
PHASE_OVERRIDES = {
    "self_judge": {
        "lora.enabled": True,
        "lora.rank": 8,
        "lora.alpha": 16.0,
        "train.learning_rate": 5e-6,
        "train.schedule": "constant",
        "train.warmup_ratio": 0.1,
        "dpo.beta": 0.1,
        "self_judge.prompts_per_step": 64,
        "self_judge.steps": 3 * 1000,    # 3 epochs over the prompts at this batch size
    },
}


def get_config(phase: str, model: str = "llama2_7b") -> ml_collections.ConfigDict:
    """`model`: one of MODELS (the preset's name and its weights' directory name)."""
    c = base_config(phase)
    c.model.source = os.environ.get("SJJAX_MODEL_DIR", f"/models/{model}")
    c.model.dtype = "bfloat16"
    c.model.param_dtype = "float32"
    c.model.remat = "full"
    c.data.sources = (dict(format="hh_rlhf", path="data/hh-rlhf/helpful-base-train.jsonl.gz"),)
    c.data.max_length = 2048
    c.data.buckets = (256, 512, 1024, 2048)
    c.data.batch_size = 64
    c.data.num_epochs = 1
    c.train.learning_rate = 2e-5
    c.train.schedule = "cosine"
    c.train.warmup_ratio = 0.03
    c.sampling.max_new_tokens = 768
    c.sampling.temperature = 1.0
    c.sampling.top_p = 0.9
    c.judge.max_length = 2048
    c.checkpoint.every_steps = 200
    return finish(c, model, phase, PHASE_OVERRIDES)
