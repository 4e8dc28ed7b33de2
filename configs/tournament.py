"""Tournament self-rejection with the preset's self-judge model (N in 1, 2, 4, 8, 16).

    python -m sjjax.main --config=configs/tournament.py[:preset]
"""

from sjjax import presets


def get_config(preset: str = "tiny"):
    return presets.make("tournament", preset)
