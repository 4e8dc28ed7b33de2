"""The weight trees a training phase works with: sharded on the mesh, with LoRA adapters
attached when enabled, and folded back into full weights for the next phase."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from sjjax import sharding
from sjjax.model.transformer import logical_axes


def merge_lora(params: dict, lora: dict, scale: float) -> dict:
    """Base weights with the adapters folded in, per layer: W + scale * A @ B, where
    A [L, *in, r], B [L, r, *out] and W [L, *in, *out]."""

    def walk(p, l):
        out = dict(p)
        for key, value in l.items():
            if "lora_a" in value:
                delta = jax.vmap(lambda a, b: jnp.tensordot(a, b, axes=1))(
                    value["lora_a"], value["lora_b"])
                kernel = p[key]["kernel"]
                out[key] = dict(p[key], kernel=(kernel + scale * delta).astype(kernel.dtype))
            else:
                out[key] = walk(p[key], value)
        return out

    return walk(params, lora) if lora else params


@dataclasses.dataclass
class Weights:
    """The weight trees of a training phase.

    Full fine-tuning: `trainable` are the weights; `ref` is a frozen copy of the start
    when the phase needs a reference (DPO, self-judge), else {}.
    LoRA: `trainable` are the adapters; `frozen` is the one copy of the base weights,
    which also serves as the reference and the judge (adapters off).
    """
    graphdef: Any        # the policy's graph (with adapters under LoRA)
    trainable: dict
    frozen: dict
    ref: dict
    base: dict           # the starting weights (= frozen with LoRA, = ref without)
    lora_scale: float    # alpha / rank, or 0 without LoRA

    @property
    def use_lora(self) -> bool:
        return bool(self.lora_scale)

    def policy(self, trainable: dict) -> tuple[dict, dict | None]:
        """(params, lora) of the current policy, as the sampler and the judge take them."""
        return (self.frozen, trainable) if self.use_lora else (trainable, None)

    def final(self, trainable: dict) -> dict:
        """Full weights for the next phase: adapters folded into the base under LoRA."""
        return merge_lora(self.base, trainable, self.lora_scale) if self.use_lora else trainable


def shard_weights(tree: dict, mesh, rules) -> dict:
    """Places every leaf on the mesh by its logical axis names."""
    if not tree:
        return tree
    return sharding.shard_tree(tree, logical_axes(tree), mesh, rules)


def prepare_weights(policy, config, mesh, rules, needs_reference: bool) -> Weights:
    """Shards the policy's weights on the mesh and attaches LoRA adapters if enabled."""
    from flax import nnx

    from sjjax.model.loading import build_model
    from sjjax.model.transformer import split_params

    base = shard_weights(policy.params, mesh, rules)
    if config.lora.enabled:
        model = build_model(policy.model_config, policy.params)
        model.add_lora(config.lora.rank, config.lora.alpha, tuple(config.lora.targets),
                       nnx.Rngs(params=config.seed + 1))
        graphdef, _, lora = split_params(model)
        return Weights(graphdef, shard_weights(lora, mesh, rules), base, {}, base,
                       config.lora.alpha / config.lora.rank)
    # Full fine-tuning updates `trainable` in place (donated): keep a separate reference.
    trainable = jax.tree.map(jnp.copy, base) if needs_reference else base
    return Weights(policy.graphdef, trainable, {}, base if needs_reference else {}, base, 0.0)
