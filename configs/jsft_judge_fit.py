"""JSFT of SmolLM2-135M on a small labelled set for many epochs: how fast can it fit the
judgments, and do they generalise to held-out pairs? (docs/results.md, "Following it up")

    python -m sjjax.main --config=configs/jsft_judge_fit.py[:pairs_per_task] [--config.x=...]

`pairs_per_task` (default 4) labelled pairs for each of the suite's 12 task families and
levels, in both orders, plus half as many SFT conversations; lr 1e-4 constant, per-example
loss normalisation, 25 epochs. Evaluate the result with configs/evaluate.py:smollm2 and
--config.model.source=<run_dir>.
"""

from sjjax import presets
from sjjax.presets import smollm2


def get_config(pairs_per_task: str = "4"):
    pairs = int(pairs_per_task)
    c = presets.make("jsft", "smollm2")
    c.data.sources = (presets.synthetic_source(smollm2.TASKS, n_sft=max(pairs // 2, 1),
                                               n_pairs=pairs, n_prompts=8,
                                               wrong_fraction=0.1),)
    c.data.num_epochs = 25
    c.train.learning_rate = 1e-4
    c.train.schedule = "constant"
    c.train.loss_normalization = "example"
    c.run_dir = f"runs/smollm2_judge_fit_{pairs}/jsft"
    c.data.tfds_dir = f"runs/smollm2_judge_fit_{pairs}/tfds"
    c.checkpoint.every_steps = 100
    return c
