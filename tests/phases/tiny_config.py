"""A scaled-down tiny preset for phase tests: the real phases and configs, fewer
steps and a smaller model where the test is about mechanics, not learning."""

from sjjax import presets
from sjjax.presets import tiny


def small(phase_name: str, run_root: str, **overrides):
    c = presets.make(phase_name, "tiny")
    c.run_dir = f"{run_root}/{phase_name}"
    c.data.tfds_dir = f"{run_root}/tfds"
    c.log.progress = False
    c.log.tensorboard = False
    c.model.tiny.hidden_size = 64
    c.model.tiny.intermediate_size = 128
    c.model.tiny.num_layers = 2
    c.model.tiny.num_heads = 4
    c.model.tiny.num_kv_heads = 2
    c.model.tiny.head_dim = 16
    c.data.sources = (presets.synthetic_source(tiny.TASKS, n_sft=40, n_pairs=40,
                                               n_prompts=32, wrong_fraction=0.1),)
    c.data.batch_size = 16
    c.sampling.batch_size = 16
    c.judge.batch_size = 16
    c.self_judge.prompts_per_step = 16
    return apply_overrides(c, overrides)


def apply_overrides(c, overrides: dict):
    """Sets dotted keys ("train.steps") of config c; returns c."""
    for key, value in overrides.items():
        node = c
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return c
