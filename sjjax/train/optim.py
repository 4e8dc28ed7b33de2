"""Optimizer and learning-rate schedules from `config.train` (optax)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
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


def _keys(path) -> list:
    return [getattr(p, "key", getattr(p, "name", None)) for p in path]


def frozen_parts(freeze_embeddings: bool, freeze_layers: int) -> optax.GradientTransformation:
    """Zeroes the gradients (or updates) of the frozen parameters.

    `freeze_embeddings`: the token embeddings (`embedder`, which is also the output layer
    when tied) and an untied `lm_head`. `freeze_layers` = K: decoder layers 0..K-1. The
    layers are stacked (one array per parameter, layer on axis 0, scanned), so a layer is
    frozen by a [L, 1, ...] row mask rather than by leaving a leaf out of the optimizer.
    Used before clipping (frozen gradients do not count in the global norm) and after
    AdamW (its weight decay would otherwise still shrink frozen weights)."""

    def mask(path, leaf):
        keys = _keys(path)
        if freeze_embeddings and keys[0] in ("embedder", "lm_head"):
            return jnp.zeros((), leaf.dtype)
        if freeze_layers and keys[0] == "layers":
            if freeze_layers > leaf.shape[0]:
                raise ConfigError(f"config.train.freeze_layers: {freeze_layers} but the model "
                                  f"has {leaf.shape[0]} layers")
            rows = (jnp.arange(leaf.shape[0]) >= freeze_layers).astype(leaf.dtype)
            return rows.reshape((-1,) + (1,) * (leaf.ndim - 1))
        return jnp.ones((), leaf.dtype)

    def update(updates, state, params=None):
        del params
        return jax.tree_util.tree_map_with_path(
            lambda path, u: u * mask(path, u), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(train, total_steps: int) -> tuple[optax.GradientTransformation,
                                                      optax.Schedule]:
    """clip -> AdamW, with the frozen parameters' gradients and updates zeroed around
    them (`train.freeze_embeddings`, `train.freeze_layers`)."""
    schedule = learning_rate_schedule(train, total_steps)
    embeddings = bool(train.get("freeze_embeddings", False))
    layers = int(train.get("freeze_layers", 0))
    freeze = frozen_parts(embeddings, layers) if embeddings or layers else None
    parts = [freeze] if freeze else []
    if train.get("max_grad_norm", 0):
        parts.append(optax.clip_by_global_norm(float(train.max_grad_norm)))
    parts.append(optax.adamw(schedule, b1=train.get("adam_b1", 0.9),
                             b2=train.get("adam_b2", 0.999), eps=train.get("adam_eps", 1e-8),
                             weight_decay=train.get("weight_decay", 0.0), mask=_decay_mask))
    if freeze:
        parts.append(freeze)
    return optax.chain(*parts), schedule
