"""Logical-axis sharding: names on arrays, rules that map names to mesh axes.

Parameters and activations are annotated with *logical* axis names (vocab, embed,
heads, kv_heads, head_dim, mlp, layers, batch, length, ...). A config holds the
rules mapping each name to a mesh axis (data, fsdp, tensor) or to None
(replicated). Changing the parallelism layout is a config change, never a model
change.

Activation constraints inside the model go through `constrain`, which reads the
active (mesh, rules) pair installed by `use_mesh`. Outside `use_mesh` it is the
identity, so single-device code never pays for it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Iterable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# Default rules, in the style of MaxText/T5X: batch over data+fsdp, weights' embed
# axis over fsdp (ZeRO-3 style), heads/mlp/vocab over tensor (Megatron style).
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("cache_length", None),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("layers", None),
    ("lora_rank", None),
    ("norm", None),
)

_state = threading.local()


def make_mesh(shape: Sequence[int], axis_names: Sequence[str] = MESH_AXES,
              devices=None) -> Mesh:
    """A mesh of `shape` over the available devices; -1 in one place takes the rest."""
    devices = list(devices if devices is not None else jax.devices())
    shape = list(shape)
    if shape.count(-1) > 1:
        raise ValueError(f"mesh shape {shape}: at most one axis may be -1")
    known = int(np.prod([s for s in shape if s != -1]))
    if -1 in shape:
        if len(devices) % known:
            raise ValueError(f"mesh shape {shape} does not divide {len(devices)} devices")
        shape[shape.index(-1)] = len(devices) // known
    needed = int(np.prod(shape))
    if needed > len(devices):
        raise ValueError(f"mesh shape {tuple(shape)} needs {needed} devices, "
                         f"{len(devices)} are available")
    if needed < len(devices):
        logging.warning("mesh shape %s uses %d of %d devices", tuple(shape), needed,
                        len(devices))
        devices = devices[:needed]
    axis_types = (jax.sharding.AxisType.Auto,) * len(shape)
    return jax.make_mesh(tuple(shape), tuple(axis_names), axis_types=axis_types,
                         devices=devices)


def normalize_rules(rules: Iterable) -> tuple[tuple[str, str | tuple[str, ...] | None], ...]:
    """Accepts rules as pairs (name, axis|[axes]|None) from a config; returns a hashable tuple."""
    out = []
    for item in rules:
        name, axes = item
        if isinstance(axes, (list, tuple)):
            axes = tuple(axes) if len(axes) else None
        out.append((str(name), axes))
    return tuple(out)


def logical_to_spec(names: Sequence[str | None], rules, mesh: Mesh | None = None,
                    shape: Sequence[int] | None = None) -> PartitionSpec:
    """Maps logical axis names to a PartitionSpec.

    A mesh axis is used at most once per array (the first name claiming it wins).
    Given `mesh` and `shape`, a dimension that the mesh axes do not divide is left
    replicated (e.g. 3 KV heads on a tensor axis of 2) instead of failing to compile.
    """
    table = dict(normalize_rules(rules))
    used: set[str] = set()
    spec = []
    for dim, name in enumerate(names):
        axes = table.get(name) if name is not None else None
        if axes is None:
            spec.append(None)
            continue
        axes = (axes,) if isinstance(axes, str) else tuple(axes)
        axes = tuple(a for a in axes if a not in used and (mesh is None or a in mesh.shape))
        if mesh is not None:
            axes = tuple(a for a in axes if mesh.shape[a] > 1)
        if mesh is not None and shape is not None and axes:
            size = int(np.prod([mesh.shape[a] for a in axes]))
            if shape[dim] % size:
                logging.debug("dimension %d (%s) of size %d not divisible by %s; replicated",
                              dim, name, shape[dim], axes)
                axes = ()
        used.update(axes)
        spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*spec)


def named_sharding(mesh: Mesh, names, rules, shape=None) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(names, rules, mesh, shape))


def tree_shardings(mesh: Mesh, logical_tree, rules, shapes_tree):
    """NamedShardings for a pytree, given a matching tree of logical-name tuples.

    `logical_tree` leaves are tuples of names; `shapes_tree` leaves are arrays or
    ShapeDtypeStructs with the same structure.
    """
    return jax.tree.map(
        lambda names, x: named_sharding(mesh, names, rules, np.shape(x)),
        logical_tree, shapes_tree, is_leaf=lambda n: isinstance(n, tuple))


@contextlib.contextmanager
def use_mesh(mesh: Mesh | None, rules=DEFAULT_RULES):
    """Installs (mesh, rules) for `constrain` and as jax's current mesh."""
    previous = getattr(_state, "value", None)
    _state.value = (mesh, normalize_rules(rules)) if mesh is not None else None
    try:
        if mesh is not None and hasattr(jax, "set_mesh"):
            with jax.set_mesh(mesh):
                yield mesh
        else:
            yield mesh
    finally:
        _state.value = previous


def active_mesh() -> Mesh | None:
    value = getattr(_state, "value", None)
    return value[0] if value else None


def active_rules():
    value = getattr(_state, "value", None)
    return value[1] if value else DEFAULT_RULES


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """`with_sharding_constraint` by logical names under the active mesh; identity otherwise."""
    value = getattr(_state, "value", None)
    if value is None:
        return x
    mesh, rules = value
    if mesh.size == 1:
        return x
    return jax.lax.with_sharding_constraint(x, named_sharding(mesh, names, rules, x.shape))


def shard_tree(tree, logical_tree, mesh: Mesh, rules=DEFAULT_RULES):
    """device_put every leaf of `tree` with the sharding its logical names give."""
    return jax.device_put(tree, tree_shardings(mesh, logical_tree, rules, tree))


def batch_sharding(mesh: Mesh, rank: int, rules=DEFAULT_RULES, shape=None) -> NamedSharding:
    """Sharding of a [batch, ...] input: batch over the rules' batch axes, rest replicated."""
    return named_sharding(mesh, ("batch",) + (None,) * (rank - 1), rules, shape)
