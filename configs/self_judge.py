"""The self_judge phase. Presets: tiny (default, CPU minutes), smollm2, smollm2_hh, llama2_7b,
llama3_8b, mistral_7b (see sjjax/presets/).

    python -m sjjax.main --config=configs/self_judge.py[:preset] [--config.key=value ...]
"""

from sjjax import presets


def get_config(preset: str = "tiny"):
    return presets.make("self_judge", preset)
