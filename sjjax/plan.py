"""Memory and FLOPs planner: will a config fit on its mesh, and how much work is a step?

    python -m sjjax.plan --config=configs/jsft.py --accelerator=v4-32 \\
        --config.model.source=llama2_7b --config.mesh.shape='(1,16,1)'
    python -m sjjax.plan --config=configs/self_judge.py --accelerator=v4-32 --json

Nothing is allocated: parameter shapes come from `nnx.eval_shape` of the real model,
their per-device share from the config's logical-axis rules (`sharding.logical_to_spec`,
the function the training code shards with). Activations, optimizer state, the KV cache
and FLOPs follow the formulas in `docs/scale.md`; each reported row carries its formula
so that it can be checked against measured memory. Numbers are bytes unless a column
says otherwise; GiB = 2**30 bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import sys
from typing import Any, Sequence

import numpy as np

from sjjax import sharding
from sjjax.errors import ConfigError
from sjjax.model.config import ModelConfig
from sjjax.model.presets import get_preset, is_preset, preset_names
from sjjax.model.transformer import PROJECTION_AXES

GIB = 2 ** 30
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

# ----------------------------------------------------------------------------- devices


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    name: str
    memory_gib: float          # HBM per JAX device
    peak_tflops: float         # dense bf16 peak per JAX device
    count_per_unit: float      # JAX devices per unit of the accelerator-type suffix


# Per *JAX device*: a v4 / v5p chip (2 TensorCores, megacore) is one device; the
# accelerator-type suffix counts TensorCores for v4 / v5p and chips for v5e / v6e.
DEVICES: dict[str, DeviceSpec] = {
    "v4": DeviceSpec("TPU v4", 32.0, 275.0, 0.5),
    "v5e": DeviceSpec("TPU v5e", 16.0, 197.0, 1.0),
    "v5p": DeviceSpec("TPU v5p", 95.0, 459.0, 0.5),
    "v6e": DeviceSpec("TPU v6e", 32.0, 918.0, 1.0),
    "h100": DeviceSpec("NVIDIA H100 80GB", 80.0, 989.0, 1.0),
    "h200": DeviceSpec("NVIDIA H200", 141.0, 989.0, 1.0),
    "a100": DeviceSpec("NVIDIA A100 80GB", 80.0, 312.0, 1.0),
}
_DEVICE_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v6litepod": "v6e"}
DEFAULT_MEMORY_GIB = 16.0


def parse_accelerator(accelerator: str) -> tuple[str, int | None]:
    """'v4-32' -> ('v4', 16 devices); 'v5litepod-64' -> ('v5e', 64); 'h100' -> ('h100', None)."""
    match = re.fullmatch(r"([a-z0-9]+?)(?:-(\d+))?", accelerator.strip().lower())
    if not match:
        raise ConfigError(f"accelerator {accelerator!r}: expected e.g. v4-32, v5litepod-64, "
                          f"v5p-16, h100")
    kind = _DEVICE_ALIASES.get(match.group(1), match.group(1))
    if kind not in DEVICES:
        raise ConfigError(f"accelerator {accelerator!r}: unknown kind {kind!r}; known "
                          f"{sorted(DEVICES)} (and {sorted(_DEVICE_ALIASES)})")
    count = match.group(2)
    if count is None:
        return kind, None
    devices = int(count) * DEVICES[kind].count_per_unit
    if devices != int(devices) or devices < 1:
        raise ConfigError(f"accelerator {accelerator!r}: {count} is not a valid size for {kind}")
    return kind, int(devices)


# ----------------------------------------------------------------------------- inputs

TRAINING_PHASES = ("jsft", "sft", "dpo", "self_judge", "pipeline")
PREFERENCE_PHASES = ("dpo", "self_judge", "pipeline")   # chosen+rejected rows, a reference
SAMPLING_PHASES = ("generate", "self_judge", "tournament", "evaluate", "pipeline")
JUDGING_PHASES = ("self_judge", "tournament", "evaluate", "pipeline")


@dataclasses.dataclass(frozen=True)
class PlanInputs:
    """Everything the formulas need, already resolved from the config."""
    model: ModelConfig
    model_source: str = ""          # where the architecture came from (for the report)
    phase: str = "jsft"
    mesh_shape: tuple[tuple[str, int], ...] = (("data", 1), ("fsdp", 1), ("tensor", 1))
    rules: tuple = sharding.DEFAULT_RULES
    # Training: `batch_size` examples per optimizer step (global), split into
    # `grad_accum` micro-batches; each example is `rows_per_example` sequences of
    # `seq_len` tokens (2 for preference phases: chosen and rejected).
    batch_size: int = 8
    grad_accum: int = 1
    seq_len: int = 512
    rows_per_example: int = 1
    lora_enabled: bool = False
    lora_rank: int = 8
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    training: bool = True
    preference: bool = False        # DPO-style: chosen+rejected rows, reference log-probs
    reference_copy: bool = False    # a frozen copy of the base weights (full-FT preference)
    # Sampling: `sampling_prompts` prompts x `samples_per_prompt` rows, cache capacity
    # prompt_len + max_new_tokens.
    sampling: bool = False
    sampling_prompts: int = 8
    samples_per_prompt: int = 1
    prompt_len: int = 512
    max_new_tokens: int = 128
    # Judging: `judge_rows` judge prompts (pairs x principles) per call, each at most
    # `judge_len` tokens, scored with a shared-prefix KV cache.
    judging: bool = False
    judge_rows: int = 8
    judge_len: int = 1024
    # The device.
    device: str | None = None
    device_memory_gib: float = DEFAULT_MEMORY_GIB
    peak_tflops: float | None = None
    # Memory of the process itself (runtime, thread pools, allocator), counted only when
    # the device is the host CPU: `plan.runtime_overhead_gib` (docs/scale.md measures it).
    runtime_overhead_gib: float = 0.0

    @property
    def mesh(self) -> dict[str, int]:
        return dict(self.mesh_shape)

    @property
    def num_devices(self) -> int:
        return int(np.prod(list(self.mesh.values())))

    @property
    def micro_batch_rows(self) -> int:
        return self.batch_size * self.rows_per_example // self.grad_accum


def _get(c, path: str, default=None):
    """config value at a dotted path, or `default` when any part is absent."""
    cur = c
    for key in path.split("."):
        try:
            if cur is None or key not in cur:
                return default
            cur = cur[key]
        except TypeError:
            return default
    return default if cur is None else cur


def model_config_from(config) -> ModelConfig:
    """The architecture named by config.model.source (a preset, 'smollm2', 'tiny', a HF
    directory or config.json, or a .gguf file), with dtype/param_dtype/remat from config.model.
    A path that does not exist here but is named after a preset (/models/llama2_7b, as the
    pod configs default to) gives that preset, so that pod configs plan on any machine."""
    return _model_config_and_origin(config)[0]


def _preset_named_by(path: str) -> str | None:
    """The last component of a path that names a preset or 'tiny' (runs/llama2_7b/jsft,
    /models/Llama2-7b, gs://bucket/runs/smollm2/jsft)."""
    for part in reversed(path.replace("://", "/").split("/")):
        name = part.lower().replace("-", "_")
        if is_preset(name) or name == "tiny":
            return name
    return None


def _model_config_and_origin(config) -> tuple[ModelConfig, str]:
    source = str(_get(config, "model.source", "smollm2"))
    overrides = {k: _get(config, f"model.{k}") for k in ("dtype", "param_dtype", "remat")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if is_preset(source):
        return get_preset(source, **overrides), f"preset {source}"
    local = "://" not in source and os.path.exists(os.path.expanduser(source))
    if not local and source != "tiny" and _preset_named_by(source):
        name = _preset_named_by(source)
        cfg = (_model_config_from_path(config, "tiny", overrides) if name == "tiny"
               else get_preset(name, **overrides))
        return cfg, (f"{'config.model.tiny' if name == 'tiny' else 'preset ' + name} "
                     f"(named by {source}, which is not on this machine)")
    return _model_config_from_path(config, source, overrides), source


def _model_config_from_path(config, source: str, overrides: dict) -> ModelConfig:
    if source == "tiny":
        tiny = dict(_get(config, "model.tiny", {}) or {})
        vocab = tiny.pop("vocab_size", 1024)
        known = {f.name for f in dataclasses.fields(ModelConfig)}  # others: tokenizer etc.
        tiny = {k: v for k, v in tiny.items() if k in known}
        return ModelConfig(vocab_size=int(vocab), **{**tiny, **overrides})
    path = os.path.expanduser(source)
    if os.path.isfile(os.path.join(path, "model", "config.json")):  # an sjjax run directory
        path = os.path.join(path, "model")
    if path.endswith(".gguf") and os.path.isfile(path):
        import gguf
        from sjjax.model.gguf_io import config_from_gguf
        return config_from_gguf(gguf.GGUFReader(path), path, **overrides)
    hf_json = os.path.join(path, "config.json") if os.path.isdir(path) else path
    if os.path.isfile(hf_json) and hf_json.endswith(".json"):
        with open(hf_json) as f:
            data = json.load(f)
        if "model_type" in data:
            return ModelConfig.from_hf_json(hf_json, **overrides)
        raise ConfigError(f"config.model.source: {hf_json} is not a Hugging Face config.json "
                          f"(no model_type); point the planner at a preset or a HF directory")
    raise ConfigError(f"config.model.source: {source!r} is not a preset "
                      f"({', '.join(preset_names())}), 'smollm2', 'tiny', a HF directory "
                      f"or a .gguf file")


def inputs_from_config(config, *, accelerator: str | None = None, num_devices: int | None = None,
                       device_memory_gib: float | None = None,
                       runtime_overhead_gib: float | None = None) -> PlanInputs:
    """Resolves a sjjax config (+ the planner's own options) into PlanInputs.

    Options win over `config.plan.{accelerator,num_devices,device_memory_gib}`, which win
    over the defaults (num_devices: the mesh's product, or this machine's device count
    when the mesh has a -1; memory: the accelerator's HBM, else 16 GiB).
    """
    phase = str(_get(config, "phase", "jsft"))
    accelerator = accelerator or _get(config, "plan.accelerator")
    device, acc_devices = parse_accelerator(accelerator) if accelerator else (None, None)
    if device is None and _get(config, "plan.device"):
        device, _ = parse_accelerator(str(_get(config, "plan.device")))
    num_devices = num_devices or _get(config, "plan.num_devices") or acc_devices

    axes = tuple(_get(config, "mesh.axes", sharding.MESH_AXES))
    shape = list(_get(config, "mesh.shape", (-1, 1, 1)))
    if len(shape) != len(axes):
        raise ConfigError(f"config.mesh.shape: {tuple(shape)} does not match axes {axes}")
    if shape.count(-1) > 1:
        raise ConfigError("config.mesh.shape: at most one -1")
    known = int(np.prod([s for s in shape if s != -1]))
    if -1 in shape:
        if num_devices is None:
            import jax
            num_devices = jax.device_count()
        if num_devices % known:
            raise ConfigError(f"config.mesh.shape: {tuple(shape)} does not divide "
                              f"{num_devices} devices")
        shape[shape.index(-1)] = num_devices // known
    elif num_devices is not None and known != num_devices:
        raise ConfigError(f"config.mesh.shape: {tuple(shape)} has {known} devices but the plan "
                          f"is for {num_devices}")
    rules = sharding.normalize_rules(_get(config, "mesh.rules", sharding.DEFAULT_RULES))

    memory = device_memory_gib or _get(config, "plan.device_memory_gib")
    if memory is None:
        memory = DEVICES[device].memory_gib if device else DEFAULT_MEMORY_GIB

    training = phase in TRAINING_PHASES or phase not in SAMPLING_PHASES
    preference = phase in PREFERENCE_PHASES
    lora_enabled = bool(_get(config, "lora.enabled", False))
    max_length = int(_get(config, "data.max_length", 512))
    prompt_len = int(_get(config, "data.max_prompt_length",
                          _get(config, "self_judge.max_prompt_length", max_length)))
    max_new = int(_get(config, "sampling.max_new_tokens", 128))
    on_policy = phase in ("self_judge", "pipeline")
    # Examples per optimizer step: train.batch_size, else the phase's own key
    # (self_judge.prompts_per_step: one chosen/rejected pair per prompt; data.batch_size:
    # rows for JSFT/SFT, pairs for DPO).
    batch = _get(config, "train.batch_size")
    if batch is None and on_policy:
        batch = _get(config, "self_judge.prompts_per_step")
    if batch is None:
        batch = _get(config, "data.batch_size", 8)
    # Tokens per training row: on-policy rows are prompt + sampled response.
    seq_len = _get(config, "plan.seq_len") or (prompt_len + max_new if on_policy
                                               else max_length)
    samples = _get(config, "sampling.num_samples")
    if samples is None and on_policy:
        samples = _get(config, "self_judge.samples_per_prompt", 2)
    if samples is None and phase == "tournament":
        samples = max(tuple(_get(config, "tournament.num_candidates", (1,))) or (1,))
    if samples is None:
        samples = 1
    # On-policy phases sample every prompt of a step in one call.
    prompts = int(batch) if on_policy else int(_get(config, "sampling.batch_size", 8))
    principles = _get(config, "judge.principles", ("helpfulness",))
    model, origin = _model_config_and_origin(config)
    return PlanInputs(
        model=model,
        model_source=origin,
        phase=phase,
        mesh_shape=tuple(zip(axes, (int(s) for s in shape))),
        rules=rules,
        batch_size=int(batch),
        grad_accum=int(_get(config, "train.grad_accum", 1)),
        seq_len=int(seq_len),
        rows_per_example=2 if preference else 1,
        lora_enabled=lora_enabled,
        lora_rank=int(_get(config, "lora.rank", 8)),
        lora_targets=tuple(_get(config, "lora.targets", ("q_proj", "v_proj"))),
        training=training,
        preference=preference,
        reference_copy=training and preference and not lora_enabled,
        sampling=phase in SAMPLING_PHASES,
        sampling_prompts=prompts,
        samples_per_prompt=int(samples),
        prompt_len=prompt_len,
        max_new_tokens=max_new,
        judging=phase in JUDGING_PHASES,
        judge_rows=int(_get(config, "judge.batch_size", 8)) * max(1, len(principles)),
        judge_len=int(_get(config, "judge.max_length", max_length)),
        device=device,
        device_memory_gib=float(memory),
        peak_tflops=DEVICES[device].peak_tflops if device else None,
        runtime_overhead_gib=float(runtime_overhead_gib if runtime_overhead_gib is not None
                                   else _get(config, "plan.runtime_overhead_gib", 0.0) or 0.0),
    )


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


def _as(tensors: list[Tensor], itemsize: int, copies: int = 1) -> list[Tensor]:
    return [dataclasses.replace(t, itemsize=itemsize, count=copies) for t in tensors]


# ----------------------------------------------------------------------------- report rows


GROUPS = ("persistent", "step", "sampling", "judge")


@dataclasses.dataclass
class Row:
    group: str          # persistent | step | sampling | judge
    name: str
    per_device: int
    global_bytes: int
    formula: str


def _rows_from(group: str, name: str, tensors: list[Tensor], inputs: PlanInputs,
               formula: str) -> Row:
    return Row(group, name, sum(per_device_bytes(t, inputs) for t in tensors),
               sum(t.global_bytes for t in tensors), formula)


def _dtype_bytes(name: str) -> int:
    return _BYTES[name]


# ----------------------------------------------------------------------------- activations

# Calibration knobs (see docs/scale.md). LOGITS_COPIES: float32 [B, T, V] arrays live
# at the loss's backward (the saved log-softmax, its gradient, the logits' gradient).
# WORKING_LAYERS: layers' worth of the remat=none per-layer set live on top of what is
# saved (the layer being differentiated, recomputed first under remat).
# SAMPLING_LOGIT_COPIES: float32 [R, V] arrays per decode step (logits, sorted, softmax,
# cumsum for top-p).
LOGITS_COPIES = 3
WORKING_LAYERS = {"none": 1, "dots": 1, "full": 1}
SAMPLING_LOGIT_COPIES = 4

_BTE = ("batch", "length", "embed")
_HEADS = ("batch", "length", "heads", "head_dim")
_SCORES = ("batch", "heads", "length", None)


def _norm_residuals(name: str, b: int, t: int, d: int, c: int) -> list[Tensor]:
    """RMSNorm keeps its float32 input, the float32 normalised value and its output."""
    return [Tensor(f"{name}: f32 input + normed", (b, t, d), 4, _BTE, 2),
            Tensor(f"{name}: output", (b, t, d), c, _BTE)]


def layer_activation_tensors(inputs: PlanInputs, rows: int,
                             seq_len: int | None = None) -> dict[str, list[Tensor]]:
    """One decoder layer's saved activations for `rows` sequences of T tokens, per remat
    policy, as `jax.ad_checkpoint.print_saved_residuals` lists them for this model.

    "none": everything the backward reads; "dots": what `dots_with_no_batch_dims_saveable`
    keeps (projection outputs the backward needs: q, k, v before RoPE, o_proj out, gate,
    up; LoRA x.A); "full": the layer input (the scan carry).
    """
    cfg = inputs.model
    b, t = rows, seq_len or inputs.seq_len
    d, h, k, dh, f = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                      cfg.intermediate_size)
    c = _dtype_bytes(cfg.dtype)
    mlp = ("batch", "length", "mlp")
    q = Tensor("q", (b, t, h, dh), c, _HEADS)
    kv = Tensor("k, v", (b, t, k, dh), c, ("batch", "length", "kv_heads", "head_dim"), 2)
    lora = []
    if inputs.lora_enabled:
        lora = [Tensor("LoRA x.A", (b, t, inputs.lora_rank), c,
                       ("batch", "length", "lora_rank"), len(inputs.lora_targets))]
    none = [
        *_norm_residuals("input_norm", b, t, d, c), q, kv,
        Tensor("masked scores f32", (b, h, t, t), 4, _SCORES),
        Tensor("attention probs", (b, h, t, t), c, _SCORES),
        Tensor("softmax max, sum f32", (b, h, t, 1), 4, _SCORES, 2),
        Tensor("attention out", (b, t, h, dh), c, _HEADS),
        *_norm_residuals("post_attn_norm", b, t, d, c),
        Tensor("gate, up, silu terms, product", (b, t, f), c, mlp, 6),
        *lora]
    dots = [Tensor("x (layer input)", (b, t, d), c, _BTE), q, kv,
            Tensor("o_proj out", (b, t, d), c, _BTE),
            Tensor("gate, up", (b, t, f), c, mlp, 2), *lora]
    full = [Tensor("x (layer input)", (b, t, d), c, _BTE)]
    return {"none": none, "dots": dots, "full": full}


def _layer_kernels(inputs: PlanInputs) -> list[Tensor]:
    return [t for t in base_param_tensors(inputs.model)
            if t.name.startswith("layers/") and not t.name.endswith("/scale")]


def activation_rows(inputs: PlanInputs) -> list[Row]:
    """Activation memory of one training micro-batch (forward + backward), per device."""
    cfg = inputs.model
    rows = inputs.micro_batch_rows
    t, l, v, d, h = (inputs.seq_len, cfg.num_layers, cfg.vocab_size, cfg.hidden_size,
                     cfg.num_heads)
    c, p = _dtype_bytes(cfg.dtype), _dtype_bytes(cfg.param_dtype)
    layer = layer_activation_tensors(inputs, rows)
    saved = [dataclasses.replace(x, count=x.count * l) for x in layer[cfg.remat]]
    working_layers = WORKING_LAYERS[cfg.remat]
    working = [dataclasses.replace(x, count=x.count * working_layers) for x in layer["none"]]
    what = {"none": "all", "dots": "projection outputs", "full": "layer inputs"}[cfg.remat]
    shape = f"{rows} rows x {t} tokens"
    out = [
        _rows_from("step", f"activations saved x{l} layers (remat={cfg.remat}: {what})",
                   saved, inputs, f"L x per-layer set ({shape}); docs/scale.md"),
        _rows_from("step", f"activations working set ({working_layers} layer(s))",
                   working, inputs, f"{working_layers} x per-layer set of remat=none"),
    ]
    if cfg.remat == "none":
        out.append(_rows_from("step", "attention mask broadcast (bool)", [
            Tensor("mask", (rows, h, t, t), 1, _SCORES)], inputs, "B x H x T x T x 1"))
        if c != p:
            out.append(_rows_from("step", f"layer weights cast to {cfg.dtype} (saved)",
                                  _as(_layer_kernels(inputs), c), inputs,
                                  f"layer kernels x {c}, sharded like the params"))
    out += [
        _rows_from("step", "final norm residuals", _norm_residuals("final_norm", rows, t, d, c),
                   inputs, "B x T x d x (4 + 4 + dtype)"),
        _rows_from("step", "attention mask (bool)", [
            Tensor("mask", (rows, 1, 1, t, t), 1, ("batch", None, None, "length", None))],
            inputs, "B x T x T x 1"),
        _rows_from("step", "log-softmax, its grad, logits grad (f32)", [
            Tensor("logits", (rows, t, v), 4, ("batch", "length", "vocab"), LOGITS_COPIES)],
            inputs, f"{LOGITS_COPIES} x B x T x V x 4"),
    ]
    kernels = _layer_kernels(inputs)
    one_layer = [dataclasses.replace(x, shape=x.shape[1:], names=x.names[1:]) for x in kernels]
    if any(shard_factor(x.names, x.shape, inputs) > 1 for x in one_layer):
        # Sharded weights are all-gathered per layer for the matmuls; in full fine-tuning
        # the layer's whole weight gradient also exists before its reduce-scatter.
        gathered = _as(one_layer, c) + ([] if inputs.lora_enabled else _as(one_layer, p))
        total = sum(x.global_bytes for x in gathered)
        out.append(Row("step", "one layer's gathered weights" +
                       ("" if inputs.lora_enabled else " + weight grads"), total, total,
                       f"layer params x {c}" + ("" if inputs.lora_enabled else f" + x {p}")
                       + ", unsharded (FSDP)"))
    return out


# ----------------------------------------------------------------------------- the plan


@dataclasses.dataclass
class Plan:
    inputs: PlanInputs
    rows: list[Row]
    totals: dict[str, int]
    flops: dict[str, float]
    warnings: list[str]

    @property
    def peak(self) -> int:
        return self.totals["peak"]

    @property
    def capacity(self) -> int:
        return int(self.inputs.device_memory_gib * GIB)

    @property
    def fits(self) -> bool:
        return self.peak <= self.capacity

    @property
    def headroom(self) -> int:
        return self.capacity - self.peak

    def to_dict(self) -> dict[str, Any]:
        i = self.inputs
        return {
            "phase": i.phase,
            "model_source": i.model_source,
            "model": {**dataclasses.asdict(i.model), "num_params": i.model.num_params()},
            "mesh": i.mesh, "num_devices": i.num_devices, "device": i.device,
            "device_memory_bytes": self.capacity,
            "training": dict(batch_size=i.batch_size, grad_accum=i.grad_accum,
                             seq_len=i.seq_len, rows_per_example=i.rows_per_example,
                             micro_batch_rows=i.micro_batch_rows, enabled=i.training)
            if i.training else None,
            "lora": dict(rank=i.lora_rank, targets=list(i.lora_targets))
            if i.lora_enabled else None,
            "sampling": dict(prompts=i.sampling_prompts, samples_per_prompt=i.samples_per_prompt,
                             prompt_len=i.prompt_len, max_new_tokens=i.max_new_tokens)
            if i.sampling else None,
            "judging": dict(rows=i.judge_rows, max_length=i.judge_len) if i.judging else None,
            "memory": [dataclasses.asdict(r) for r in self.rows],
            "totals": self.totals,
            "flops": self.flops,
            "fits": self.fits,
            "headroom_bytes": self.headroom,
            "warnings": self.warnings,
        }


def flops(inputs: PlanInputs) -> dict[str, float]:
    """FLOPs of one optimizer step (global) and of one sampling call.

    N = weight-matmul parameters touched per token (every projection + the LM head; the
    embedding lookup is not a matmul). Forward 2N per token; backward 4N (full FT: grads
    w.r.t. activations and weights) or 2N (LoRA: activations only, base frozen); LoRA
    adapters themselves 2 / 4 x their size. Attention (dense, as computed here: the
    causal half is masked, not skipped) 4 B T^2 H Dh per layer forward, twice that backward.
    """
    cfg = inputs.model
    l, h, dh, v, d = cfg.num_layers, cfg.num_heads, cfg.head_dim, cfg.vocab_size, cfg.hidden_size
    n = l * sum(int(np.prod(i)) * int(np.prod(o)) for i, o in projection_shapes(cfg).values())
    n += d * v
    n_lora = 0
    if inputs.lora_enabled:
        shapes = projection_shapes(cfg)
        n_lora = l * sum(inputs.lora_rank * (int(np.prod(shapes[t][0]))
                                             + int(np.prod(shapes[t][1])))
                         for t in inputs.lora_targets)
    out: dict[str, float] = {"matmul_params_per_token": float(n), "lora_params": float(n_lora)}
    if inputs.training:
        rows = inputs.batch_size * inputs.rows_per_example
        t = inputs.seq_len
        tokens = rows * t
        attn = 4.0 * rows * t * t * h * dh * l
        fwd = 2.0 * n * tokens + 2.0 * n_lora * tokens + attn
        if inputs.lora_enabled:
            bwd = 2.0 * n * tokens + 4.0 * n_lora * tokens + 2 * attn
        else:
            bwd = 4.0 * n * tokens + 2 * attn
        # Remat recomputes inside the layers only (not the embedding or LM head): "dots"
        # the attention einsums; "full" the layer's forward except down_proj, whose output
        # only feeds the residual addition (its LoRA, if any, is counted: small).
        layer_fwd = 2.0 * (n - d * v - l * d * cfg.intermediate_size) * tokens
        recompute = {"none": 0.0, "dots": attn,
                     "full": layer_fwd + 2.0 * n_lora * tokens + attn}[cfg.remat]
        ref = (2.0 * n * tokens + attn) if inputs.preference else 0.0
        out.update(tokens_per_step=float(tokens), attention_forward=attn, forward=fwd,
                   backward=bwd, model_flops=fwd + bwd, remat_recompute=recompute,
                   reference_forward=ref, hardware_flops=fwd + bwd + recompute + ref)
        out["hardware_flops_per_device"] = out["hardware_flops"] / inputs.num_devices
        out["model_flops_per_token"] = (fwd + bwd) / tokens
        if inputs.peak_tflops:
            out["ideal_step_seconds"] = out["hardware_flops_per_device"] / (
                inputs.peak_tflops * 1e12)
    if inputs.sampling:
        p, r = inputs.sampling_prompts, inputs.sampling_prompts * inputs.samples_per_prompt
        s = inputs.prompt_len + inputs.max_new_tokens
        prefill = 2.0 * n * p * inputs.prompt_len + 4.0 * p * inputs.prompt_len ** 2 * h * dh * l
        decode = inputs.max_new_tokens * (2.0 * n * r + 4.0 * r * s * h * dh * l)
        out.update(sampling_prefill=prefill, sampling_decode=decode,
                   sampling_flops=prefill + decode)
    return out


def make_plan(inputs: PlanInputs) -> Plan:
    cfg = inputs.model
    warnings: list[str] = []
    base = base_param_tensors(cfg)
    lora = (lora_param_tensors(cfg, inputs.lora_rank, inputs.lora_targets)
            if inputs.lora_enabled else [])
    p = _dtype_bytes(cfg.param_dtype)
    rows: list[Row] = [_rows_from("persistent", f"parameters ({cfg.param_dtype})", base, inputs,
                                  "base params x param bytes, sharded by the rules")]
    if inputs.runtime_overhead_gib:
        overhead = int(inputs.runtime_overhead_gib * GIB)
        rows.append(Row("persistent", "process runtime overhead (host CPU)", overhead,
                        overhead * inputs.num_devices,
                        "plan.runtime_overhead_gib, measured (docs/scale.md)"))
    if lora:
        rows.append(_rows_from("persistent", "LoRA adapters (float32)", lora, inputs,
                               "L x r x (in + out) per target x 4"))
    if inputs.training:
        trainable = lora if inputs.lora_enabled else base
        t_bytes = 4 if inputs.lora_enabled else p
        if inputs.reference_copy:
            rows.append(_rows_from("persistent", "reference model (frozen copy)", base, inputs,
                                   "= parameters (full-FT preference training)"))
        if t_bytes != 4:
            rows.append(_rows_from("persistent", "optimizer: float32 master copy",
                                   _as(trainable, 4), inputs, "trainable x 4 (params not f32)"))
        rows.append(_rows_from("persistent", "optimizer: AdamW mu, nu (float32)",
                               _as(trainable, 4, 2), inputs, "trainable x 2 x 4"))
        rows.append(_rows_from("step", "gradients", _as(trainable, t_bytes), inputs,
                               f"trainable x {t_bytes}"))
        if inputs.grad_accum > 1:
            # train/steps.py scans the micro-batches with the gradient sum as the carry.
            rows.append(_rows_from("step", "gradient accumulator", _as(trainable, t_bytes),
                                   inputs, f"trainable x {t_bytes} (grad_accum > 1)"))
        rows.extend(activation_rows(inputs))
        micro = inputs.batch_size * inputs.rows_per_example
        if micro % inputs.grad_accum:
            warnings.append(f"batch rows {micro} not divisible by grad_accum "
                            f"{inputs.grad_accum}")
        split = shard_factor(("batch",), (inputs.micro_batch_rows,), inputs)
        wanted = batch_shards(inputs)
        if split < wanted:
            warnings.append(f"micro-batch of {inputs.micro_batch_rows} rows does not divide the "
                            f"{wanted} batch shards: it is replicated (every device computes "
                            f"all rows); use a batch that is a multiple of {wanted}")
    if inputs.sampling:
        c = _dtype_bytes(cfg.dtype)
        r = inputs.sampling_prompts * inputs.samples_per_prompt
        s = inputs.prompt_len + inputs.max_new_tokens
        kv = Tensor("kv", (cfg.num_layers, r, s, cfg.num_kv_heads, cfg.head_dim), c,
                    ("layers", "batch", "cache_length", "kv_heads", "head_dim"), 2)
        rows.append(_rows_from("sampling", f"KV cache ({r} rows x {s} slots)", [kv], inputs,
                               "L x rows x (prompt + new) x K x Dh x 2 x dtype"))
        if shard_factor(("batch",), (r,), inputs) < batch_shards(inputs):
            warnings.append(f"sampling {r} rows does not divide the {batch_shards(inputs)} "
                            f"batch shards: the KV cache is replicated")
        rows.append(_rows_from("sampling", f"sampling logits ({SAMPLING_LOGIT_COPIES} copies)", [
            Tensor("logits", (r, cfg.vocab_size), 4, ("batch", "vocab"), SAMPLING_LOGIT_COPIES)],
            inputs, f"{SAMPLING_LOGIT_COPIES} x rows x V x 4"))

    if inputs.judging:
        c = _dtype_bytes(cfg.dtype)
        r, s = inputs.judge_rows, inputs.judge_len
        kv = [Tensor(name, (cfg.num_layers, n, s, cfg.num_kv_heads, cfg.head_dim), c,
                     ("layers", "batch", "cache_length", "kv_heads", "head_dim"), 2)
              for name, n in (("prefix", r), ("both orders", 2 * r))]
        rows.append(_rows_from("judge", f"judge KV caches ({r} + {2 * r} rows x {s} slots)", kv,
                               inputs, "L x (rows + 2 rows) x judge len x K x Dh x 2 x dtype "
                               "(shared prefix, then repeated for the 2 orders)"))
        if shard_factor(("batch",), (r,), inputs) < batch_shards(inputs):
            warnings.append(f"judge calls of {r} prompts (judge.batch_size x principles) do not "
                            f"divide the {batch_shards(inputs)} batch shards: the judge's prefix "
                            f"cache and forward are replicated; use a multiple of "
                            f"{batch_shards(inputs)}")
        rows.append(_rows_from("judge", "judge prefix forward, one layer",
                               layer_activation_tensors(inputs, r, s)["none"], inputs,
                               "remat=none per-layer set at judge rows and length"))

    def total(group):
        return sum(r.per_device for r in rows if r.group == group)

    totals = {g: total(g) for g in GROUPS}
    totals["training_peak"] = totals["persistent"] + totals["step"] if inputs.training else 0
    totals["sampling_peak"] = totals["persistent"] + totals["sampling"] if inputs.sampling else 0
    totals["judge_peak"] = totals["persistent"] + totals["judge"] if inputs.judging else 0
    totals["peak"] = max(totals["training_peak"], totals["sampling_peak"], totals["judge_peak"],
                         totals["persistent"])
    return Plan(inputs, rows, totals, flops(inputs), warnings)


def plan_config(config, **options) -> Plan:
    return make_plan(inputs_from_config(config, **options))


# ----------------------------------------------------------------------------- printing


def _gib(n: float) -> str:
    return f"{n / GIB:.3f}"


def _num(x: float) -> str:
    """FLOPs with an SI prefix: 1.4e15 -> '1.4 PFLOP'."""
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}FLOP"
    return f"{x:.3g} FLOP"


def verdict(plan: Plan) -> str:
    cap = plan.inputs.device_memory_gib
    if plan.fits:
        return (f"FITS: peak {plan.peak / GIB:.2f} GiB of {cap:g} GiB per device "
                f"(headroom {plan.headroom / GIB:.2f} GiB, "
                f"{100 * plan.headroom / plan.capacity:.0f}%)")
    return (f"DOES NOT FIT: peak {plan.peak / GIB:.2f} GiB of {cap:g} GiB per device "
            f"(short by {-plan.headroom / GIB:.2f} GiB)")


def format_plan(plan: Plan) -> str:
    i, cfg = plan.inputs, plan.inputs.model
    mesh = " ".join(f"{k}={v}" for k, v in i.mesh.items())
    device = (DEVICES[i.device].name if i.device else
              "device (unspecified: pass --accelerator or --device_memory_gib)")
    lines = [
        f"sjjax plan: phase={i.phase}  model {cfg.model_type} L={cfg.num_layers} "
        f"d={cfg.hidden_size} "
        f"H={cfg.num_heads}/{cfg.num_kv_heads} F={cfg.intermediate_size} V={cfg.vocab_size} "
        f"({cfg.num_params() / 1e9:.3f} B params)"
        + (f"\n  model from {i.model_source}" if i.model_source else ""),
        f"  mesh {mesh} = {i.num_devices} devices; {device} with {i.device_memory_gib:g} GiB; "
        f"params {cfg.param_dtype}, compute {cfg.dtype}, remat {cfg.remat}",
    ]
    if i.training:
        lines.append(
            f"  training: {i.batch_size} examples x {i.rows_per_example} row(s) x {i.seq_len} "
            f"tokens per step, grad_accum {i.grad_accum} -> micro-batch {i.micro_batch_rows} rows; "
            + (f"LoRA r={i.lora_rank} on {','.join(i.lora_targets)}" if i.lora_enabled
               else "full fine-tuning"))
    if i.sampling:
        lines.append(f"  sampling: {i.sampling_prompts} prompts x {i.samples_per_prompt} samples, "
                     f"prompt {i.prompt_len} + {i.max_new_tokens} new tokens")
    if i.judging:
        lines.append(f"  judging: {i.judge_rows} judge prompts per call, up to {i.judge_len} "
                     f"tokens")
    width = max([len(r.name) + 7 for r in plan.rows] + [45])
    lines.append("")
    lines.append(f"  {'memory':<{width}} {'GiB/device':>10} {'GiB global':>10}   formula")
    for group in GROUPS:
        for r in plan.rows:
            if r.group == group:
                label = f"[{group[:4]}] {r.name}"
                lines.append(f"  {label:<{width}} {_gib(r.per_device):>10} "
                             f"{_gib(r.global_bytes):>10}   {r.formula}")
    t = plan.totals
    lines.append(f"  {'persistent (params, reference, optimizer)':<{width}} "
                 f"{_gib(t['persistent']):>10}")
    if i.training:
        lines.append(f"  {'training step peak (persistent + step)':<{width}} "
                     f"{_gib(t['training_peak']):>10}")
    if i.sampling:
        lines.append(f"  {'sampling peak (persistent + sampling)':<{width}} "
                     f"{_gib(t['sampling_peak']):>10}")
    if i.judging:
        lines.append(f"  {'judging peak (persistent + judge)':<{width}} "
                     f"{_gib(t['judge_peak']):>10}")
    f = plan.flops
    lines.append("")
    if i.training:
        lines.append(f"  FLOPs per step: forward {_num(f['forward'])} + backward "
                     f"{_num(f['backward'])} = model {_num(f['model_flops'])} (attention "
                     f"forward {_num(f['attention_forward'])}); + remat recompute "
                     f"{_num(f['remat_recompute'])} + reference forward "
                     f"{_num(f['reference_forward'])} = {_num(f['hardware_flops'])}")
        line = (f"  per device {_num(f['hardware_flops_per_device'])}; model "
                f"{_num(f['model_flops_per_token'])} per token "
                f"(6N = {_num(6 * f['matmul_params_per_token'])})")
        if "ideal_step_seconds" in f:
            line += f"; {f['ideal_step_seconds']:.3g} s per step at 100% of peak"
        lines.append(line)
    if i.sampling:
        lines.append(f"  FLOPs per sampling call: prefill {_num(f['sampling_prefill'])} + decode "
                     f"{_num(f['sampling_decode'])}")
    for w in plan.warnings:
        lines.append(f"  warning: {w}")
    lines.append("")
    lines.append(verdict(plan))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def _define_flags():
    from absl import flags
    from ml_collections import config_flags
    config = config_flags.DEFINE_config_file(
        "config", None, "Path to an ml_collections config file (configs/*.py[:preset]).",
        lock_config=True)
    flags.DEFINE_string("accelerator", None, "e.g. v4-32, v5litepod-64, v5p-16, h100: sets "
                        "the device count and HBM per device")
    flags.DEFINE_integer("num_devices", None, "devices in the mesh (resolves a -1 in mesh.shape)")
    flags.DEFINE_float("device_memory_gib", None, "HBM per device for the fit check")
    flags.DEFINE_float("runtime_overhead_gib", None, "host CPU only: the process's own "
                       "memory, added as a persistent row (0.5 measured; docs/scale.md)")
    flags.DEFINE_bool("json", False, "print the plan as JSON")
    return config


def main(argv=None) -> int:
    from absl import app, flags
    config_flag = _define_flags()

    def _run(args):
        if len(args) > 1:
            raise app.UsageError(f"unexpected arguments: {args[1:]}")
        if config_flag.value is None:
            raise app.UsageError("--config=configs/<phase>.py is required")
        f = flags.FLAGS
        try:
            plan = plan_config(config_flag.value, accelerator=f.accelerator,
                               num_devices=f.num_devices, device_memory_gib=f.device_memory_gib,
                               runtime_overhead_gib=f.runtime_overhead_gib)
        except (ConfigError, ValueError, KeyError) as e:
            print(f"sjjax.plan: error: {e}", file=sys.stderr)
            return 2
        if f.json:
            print(json.dumps(plan.to_dict(), indent=2, default=str))
        else:
            print(format_plan(plan))
        return 0

    app.run(_run, argv=argv or sys.argv)
    return 0


if __name__ == "__main__":
    main()
