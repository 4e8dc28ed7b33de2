"""Chat with SmolLM2-135M-Instruct (fetch it first: `python -m sjjax.assets smollm2`).

    python -m sjjax.main --config=configs/generate.py
    python -m sjjax.main --config=configs/generate.py --config.generate.interactive=True
    python -m sjjax.main --config=configs/generate.py --config.model.source=/path/to/hf_dir
"""

from sjjax.config import base_config


def get_config():
    c = base_config("generate")
    c.model.source = "smollm2"
    c.sampling.max_new_tokens = 96
    c.sampling.temperature = 0.7
    c.sampling.top_p = 0.9
    c.generate.prompts = ("What is the capital of France?",
                          "Give me three tips for staying focused while studying.",
                          "Write a haiku about the sea.")
    return c
