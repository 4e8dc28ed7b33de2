"""Evaluate a model (default: the preset's self-judge run) on held-out data.

    python -m sjjax.main --config=configs/evaluate.py[:preset] \
        --config.model.source=runs/tiny/jsft --config.run_dir=runs/tiny/eval_jsft
"""

from sjjax import presets


def get_config(preset: str = "tiny"):
    return presets.make("evaluate", preset)
