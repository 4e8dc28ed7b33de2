"""Putting the train state and batches on the mesh, and compiling a step for it."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from sjjax import sharding
from sjjax.train.steps import TrainState


def batch_to_device(batch: dict, mesh, rules, whole: bool = False) -> dict:
    """numpy [A, b, ...] (this host's rows) -> global arrays sharded over data/fsdp on b.

    whole=True: the arrays are the global batch itself, the same on every process
    (self-judge builds its DPO rows from samples every process holds); each process then
    puts on its devices the rows their shards cover, whatever the layout."""
    out = {}
    for name, value in batch.items():
        value = np.asarray(value)
        names = (None, "batch") + (None,) * (value.ndim - 2)
        spec_sharding = sharding.named_sharding(mesh, names, rules)
        if jax.process_count() == 1:
            out[name] = jax.device_put(value, spec_sharding)
        elif whole:
            out[name] = jax.make_array_from_callback(value.shape, spec_sharding,
                                                     lambda index, v=value: v[index])
        else:
            out[name] = jax.make_array_from_process_local_data(spec_sharding, value)
    return out


def init_state(trainable: dict, optimizer, seed: int, mesh) -> TrainState:
    # Jitting init lets XLA give each optimizer moment its parameter's sharding.
    opt_state = jax.jit(optimizer.init)(trainable)
    key = jax.random.key_data(jax.random.key(seed))
    state = TrainState(trainable, opt_state, jnp.zeros((), jnp.int32), key)
    return jax.device_put(state, state_shardings(state, mesh))


def state_shardings(state: TrainState, mesh):
    """Each leaf's NamedSharding on `mesh`; leaves that are not laid out on the mesh
    (scalars such as the step or Adam's count) are replicated."""
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def of(x):
        s = getattr(x, "sharding", None)
        return s if isinstance(s, jax.sharding.NamedSharding) and s.mesh == mesh else replicated

    return jax.tree.map(of, state)


def jit_step(step_fn: Callable, state: TrainState, step_args: tuple, batch_example: dict, mesh):
    """jit(step_fn) with explicit shardings: the state in and out keeps its layout and is
    donated (updated in place); weights that are not trained and batches keep theirs."""
    state_sh = state_shardings(state, mesh)
    arg_sh = tuple(jax.tree.map(lambda x: x.sharding, a) for a in step_args)
    batch_sh = jax.tree.map(lambda x: x.sharding, batch_example)
    return jax.jit(step_fn, in_shardings=(state_sh,) + arg_sh + (batch_sh,),
                   out_shardings=(state_sh, None), donate_argnums=(0,))
