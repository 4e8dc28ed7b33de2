"""Optimizer and learning-rate schedules from `config.train` (optax)."""

from __future__ import annotations

import jax
import optax

from sjjax.errors import ConfigError


def warmup_steps(train, total_steps: int) -> int:
    if train.get("warmup_steps", 0):
        return int(train.warmup_steps)
    return int(round(train.get("warmup_ratio", 0.0) * total_steps))


def learning_rate_schedule(train, total_steps: int) -> optax.Schedule:
    """cosine (to 0), linear (to 0) or constant, each after a linear warmup from 0."""
    lr = float(train.learning_rate)
    warm = warmup_steps(train, total_steps)
    decay = max(total_steps - warm, 1)
    kind = train.get("schedule", "cosine")
    if kind == "cosine":
        main = optax.cosine_decay_schedule(lr, decay)
    elif kind == "linear":
        main = optax.linear_schedule(lr, 0.0, decay)
    elif kind == "constant":
        main = optax.constant_schedule(lr)
    else:
        raise ConfigError(f"config.train.schedule: {kind!r} is not cosine, linear or constant")
    if warm == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warm), main], [warm])


def _decay_mask(params):
    """Weight decay on matrices only (not on norm scales or biases), as HF does."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: x.ndim >= 2 and getattr(path[-1], "key", "") not in ("bias", "scale"),
        params)


def make_optimizer(train, total_steps: int) -> tuple[optax.GradientTransformation,
                                                      optax.Schedule]:
    schedule = learning_rate_schedule(train, total_steps)
    parts = []
    if train.get("max_grad_norm", 0):
        parts.append(optax.clip_by_global_norm(float(train.max_grad_norm)))
    parts.append(optax.adamw(schedule, b1=train.get("adam_b1", 0.9),
                             b2=train.get("adam_b2", 0.999), eps=train.get("adam_eps", 1e-8),
                             weight_decay=train.get("weight_decay", 0.0), mask=_decay_mask))
    return optax.chain(*parts), schedule
