"""The jsft phase. Presets: tiny (default, CPU minutes), smollm2, smollm2_hh, llama2_7b,
llama3_8b, mistral_7b (see sjjax/presets/).

    python -m sjjax.main --config=configs/jsft.py[:preset] [--config.key=value ...]
"""

from sjjax import presets


def get_config(preset: str = "tiny"):
    return presets.make("jsft", preset)
