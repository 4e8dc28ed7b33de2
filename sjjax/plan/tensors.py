"""The arrays the plan counts and how the mesh splits them: a `Tensor` (global shape,
bytes per element, logical axes), its per-device share under the config's sharding rules
(`sharding.logical_to_spec`, the function the training code shards with), the model's
parameters from `nnx.eval_shape` of the real model, and a report `Row` summing tensors.
Sizes are bytes; GiB = 2**30 bytes."""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Sequence

import numpy as np

from sjjax import sharding
from sjjax.errors import ConfigError
from sjjax.model.config import ModelConfig
from sjjax.model.transformer import PROJECTION_AXES

if TYPE_CHECKING:
    from sjjax.plan.inputs import PlanInputs

GIB = 2 ** 30
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def dtype_bytes(name: str) -> int:
    """Bytes per element of a dtype name ('bfloat16' -> 2)."""
    return _BYTES[name]


# ----------------------------------------------------------------------------- sharding


def abstract_mesh(mesh: dict[str, int]):
    """A device-free mesh: all `logical_to_spec` needs is `.shape`."""
    from jax.sharding import AbstractMesh
    return AbstractMesh(tuple(mesh.values()), tuple(mesh.keys()))


def batch_shards(inputs: PlanInputs) -> int:
    """Mesh devices the rules give the batch axis (data x fsdp by default)."""
    return shard_factor(("batch",), (inputs.num_devices,), inputs)


def shard_factor(names: Sequence[str | None], shape: Sequence[int], inputs: PlanInputs) -> int:
    """How many ways the mesh splits an array with these logical axis names and shape
    (1 = replicated), exactly as `sharding.logical_to_spec` lays it out."""
    spec = sharding.logical_to_spec(tuple(names), inputs.rules, abstract_mesh(inputs.mesh),
                                    tuple(shape))
    mesh = inputs.mesh
    factor = 1
    for entry in spec:
        for axis in (() if entry is None else (entry,) if isinstance(entry, str) else entry):
            factor *= mesh[axis]
    return factor


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One array: global shape, bytes per element, logical axes, how many copies."""
    name: str
    shape: tuple[int, ...]
    itemsize: int
    names: tuple[str | None, ...]
    count: int = 1

    @property
    def global_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.itemsize * self.count


def per_device_bytes(t: Tensor, inputs: PlanInputs) -> int:
    """Global bytes divided by the product of the mesh axes that shard the tensor."""
    return t.global_bytes // shard_factor(t.names, t.shape, inputs)


def as_dtype(tensors: list[Tensor], itemsize: int, copies: int = 1) -> list[Tensor]:
    """The same shapes at `itemsize` bytes per element, `copies` of each."""
    return [dataclasses.replace(t, itemsize=itemsize, count=copies) for t in tensors]


# ----------------------------------------------------------------------------- parameters


@functools.lru_cache(maxsize=16)
def _base_param_tensors(cfg: ModelConfig) -> tuple[Tensor, ...]:
    import jax
    from sjjax.model.transformer import abstract_model, logical_axes, split_params
    _, params, _ = split_params(abstract_model(cfg))
    axes = logical_axes(params)
    flat_axes = dict(jax.tree_util.tree_flatten_with_path(
        axes, is_leaf=lambda x: isinstance(x, tuple))[0])
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = "/".join(str(getattr(p, "key", p)) for p in path)
        out.append(Tensor(name, tuple(leaf.shape), np.dtype(leaf.dtype).itemsize,
                          tuple(flat_axes[path])))
    return tuple(out)


def base_param_tensors(cfg: ModelConfig) -> list[Tensor]:
    """Every base parameter (path, shape, dtype, logical axes), from the real model
    built abstractly with `nnx.eval_shape` (nothing is allocated)."""
    return list(_base_param_tensors(cfg))


def layer_kernels(cfg: ModelConfig) -> list[Tensor]:
    """The stacked per-layer weight matrices ([L, ...]; norm scales left out)."""
    return [t for t in base_param_tensors(cfg)
            if t.name.startswith("layers/") and not t.name.endswith("/scale")]


def projection_shapes(cfg: ModelConfig) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """(in_shape, out_shape) of each per-layer projection."""
    d, h, k, dh, f = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                      cfg.intermediate_size)
    return {"q_proj": ((d,), (h, dh)), "k_proj": ((d,), (k, dh)), "v_proj": ((d,), (k, dh)),
            "o_proj": ((h, dh), (d,)), "gate_proj": ((d,), (f,)), "up_proj": ((d,), (f,)),
            "down_proj": ((f,), (d,))}


def lora_param_tensors(cfg: ModelConfig, rank: int, targets: Sequence[str]) -> list[Tensor]:
    """LoRA adapters as `Linear.add_lora` creates them (float32, stacked over layers):
    A [L, *in, r], B [L, r, *out] per target projection."""
    shapes = projection_shapes(cfg)
    bad = [t for t in targets if t not in shapes]
    if bad:
        raise ConfigError(f"config.lora.targets: unknown projections {bad}; choose from "
                          f"{sorted(shapes)}")
    out = []
    stack = (cfg.num_layers,)
    for target in targets:
        (in_shape, out_shape), (in_axes, out_axes) = shapes[target], PROJECTION_AXES[target]
        out.append(Tensor(f"{target}/lora_a", stack + in_shape + (rank,), 4,
                          ("layers",) + in_axes + ("lora_rank",)))
        out.append(Tensor(f"{target}/lora_b", stack + (rank,) + out_shape, 4,
                          ("layers", "lora_rank") + out_axes))
    return out


# ----------------------------------------------------------------------------- report rows


GROUPS = ("persistent", "step", "sampling", "judge")


@dataclasses.dataclass
class Row:
    """One line of the memory report: bytes per device and in total over the mesh."""
    group: str          # persistent | step | sampling | judge
    name: str
    per_device: int
    global_bytes: int
    formula: str


def rows_from(group: str, name: str, tensors: list[Tensor], inputs: PlanInputs,
              formula: str) -> Row:
    """A report row summing `tensors` (per device as the mesh shards each)."""
    return Row(group, name, sum(per_device_bytes(t, inputs) for t in tensors),
               sum(t.global_bytes for t in tensors), formula)
