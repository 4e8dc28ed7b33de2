"""Can the tiny model learn one of the suite's tasks at all? SFT from scratch (the tiny
preset's model and settings) on one family alone, e.g. `membership` ("Is 83 in the list
58, 23, 61, 85, 42?"), the step a check-first judge must compute (docs/results.md, "A
judge that checks, then decides"); measure it with `bench/greedy_headroom.py <run>
--split heldout --families <family> --levels ...`.

    python -m sjjax.main --config=configs/skill_sft.py[:<family>[,<sft per level>]] \
        [--config.data.num_epochs=3]                      # -> runs/tiny/skill_<family>

Measured (docs/results.md): membership stays a coin with digit tokens and with one token
per number (`--config.model.tiny.numbers=pairs`), at the preset's learning rate and at
3e-4 (`--config.train.learning_rate=3e-4`); at a constant 3e-4 for 10 epochs (3,750
steps) it leaves the coin slowly (0.62), and no faster from fresh conversations in
batches of 64 (`:membership,40000 --config.data.batch_size=64`, one epoch: 0.58);
`bench/membership_probe.py` has the bare task, and (`--suite pairs`) these prompts trained
on the answer token alone with fresh batches of 64, which does learn (0.90).
"""

from sjjax import presets
from sjjax.data.synthetic.tasks import FAMILIES
from sjjax.errors import ConfigError


def get_config(arg: str = "membership"):
    family, _, n = arg.partition(",")
    if family not in FAMILIES:
        raise ConfigError(f"configs/skill_sft.py:{arg}: unknown family {family!r} "
                          f"(expected one of {FAMILIES})")
    c = presets.make("sft", "tiny")
    c.data.sources = (presets.synthetic_source(
        dict(families=(family,), levels=(1, 2, 3)), n_sft=int(n or 4000), n_pairs=0,
        n_prompts=256, wrong_fraction=0.0, seed=2),)
    c.run_dir = f"runs/tiny/skill_{family}"
    return c
