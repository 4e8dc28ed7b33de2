"""The key/value cache used for prefill and one-token decode steps.

One cache holds every layer: k, v [L, B, K, S, Dh] (kv-head major: each head's slots
are contiguous, so attention reads them without a transpose). Slots are filled left to
right; `index` is the next free slot (the same for every row, since batches are
left-padded), and `positions` [B, S] holds each slot's rotary position, or -1
where the slot holds no real token (padding, or a slot not yet written).
Positions are stored rather than recomputed so that rows may contain gaps, e.g.
a shared judge prefix followed by a left-padded suffix.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from sjjax.model.config import ModelConfig

CACHE_AXES = ("layers", "batch", "kv_heads", "cache_length", "head_dim")


class KVCache(NamedTuple):
    k: jax.Array          # [L, B, K, S, Dh]
    v: jax.Array          # [L, B, K, S, Dh]
    positions: jax.Array  # [B, S] int32, -1 = empty slot
    index: jax.Array      # [] int32, next slot to write

    @classmethod
    def empty(cls, cfg: ModelConfig, batch: int, capacity: int, dtype=None) -> "KVCache":
        dtype = dtype or cfg.compute_dtype
        shape = (cfg.num_layers, batch, cfg.num_kv_heads, capacity, cfg.head_dim)
        return cls(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
                   positions=jnp.full((batch, capacity), -1, jnp.int32),
                   index=jnp.zeros((), jnp.int32))

    @property
    def capacity(self) -> int:
        return self.positions.shape[1]

    def next_positions(self) -> jax.Array:
        """[B] rotary position of each row's next token (its count of real tokens)."""
        return jnp.max(self.positions, axis=1) + 1

    def repeat(self, n: int) -> "KVCache":
        """Each row repeated n times along the batch (row i -> rows i*n .. i*n+n-1)."""
        return KVCache(k=jnp.repeat(self.k, n, axis=1), v=jnp.repeat(self.v, n, axis=1),
                       positions=jnp.repeat(self.positions, n, axis=0), index=self.index)

    def grow(self, capacity: int) -> "KVCache":
        """The same cache with room for `capacity` slots (new slots empty)."""
        extra = capacity - self.capacity
        if extra < 0:
            raise ValueError(f"cannot shrink a cache of {self.capacity} slots to {capacity}")
        pad = [(0, 0)] * 5
        pad[3] = (0, extra)
        return KVCache(k=jnp.pad(self.k, pad), v=jnp.pad(self.v, pad),
                       positions=jnp.pad(self.positions, [(0, 0), (0, extra)],
                                         constant_values=-1),
                       index=self.index)
