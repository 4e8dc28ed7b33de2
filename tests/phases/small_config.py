"""`python -m sjjax.main --config=tests/phases/small_config.py:<phase>`: the scaled-down
tiny preset of `tests.phases.tiny_config.small` as a config file, so that tests can run
the real command line (tests/phases/test_multiprocess.py starts it as several processes),
with a smaller data set (8 SFT conversations and 8 labelled pairs per task: 144 JSFT
examples, 9 batches an epoch) and one padded length per kind of batch (one compiled
program each).
Set config.run_dir and config.data.tfds_dir on the command line."""

from sjjax import presets
from sjjax.presets import tiny
from tests.phases.tiny_config import small


def get_config(phase: str = "jsft"):
    c = small(phase, "runs/small")
    c.data.sources = (presets.synthetic_source(tiny.TASKS, n_sft=8, n_pairs=8, n_prompts=32,
                                               wrong_fraction=0.1),)
    c.data.buckets = (c.data.max_length,)
    # self-judge: one padded width for prompts and for DPO rows (fewer programs to compile)
    c.sampling.prompt_bucket = 64
    c.data.length_bucket = 128
    return c
