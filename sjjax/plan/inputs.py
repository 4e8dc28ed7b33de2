"""What the plan is for: a sjjax config (+ the planner's options) resolved into
`PlanInputs` — the architecture, the mesh and sharding rules, the batch of a training
step, the sampling and judging calls of the phase, and the device."""

from __future__ import annotations

import dataclasses

import numpy as np

from sjjax import sharding
from sjjax.errors import ConfigError
from sjjax.model.config import ModelConfig
from sjjax.phases import PHASES
from sjjax.plan.architecture import architecture
from sjjax.plan.devices import DEFAULT_MEMORY_GIB, DEVICES, parse_accelerator

# What each phase does with a model, from the single table in sjjax.phases.
TRAINING_PHASES = tuple(name for name, p in PHASES.items() if p.trains)
PREFERENCE_PHASES = tuple(name for name, p in PHASES.items() if p.preference)
SAMPLING_PHASES = tuple(name for name, p in PHASES.items() if p.samples)
JUDGING_PHASES = tuple(name for name, p in PHASES.items() if p.judges)
# Trains on its own samples: each step's rows are prompt + sampled response.
ON_POLICY_PHASES = tuple(name for name, p in PHASES.items() if p.trains and p.samples)


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
    # train.loss_chunk: sequence positions per chunk of the loss's logits (0 = whole).
    loss_chunk: int = 0
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


def _model_config_and_origin(config) -> tuple[ModelConfig, str]:
    source = str(_get(config, "model.source", "smollm2"))
    overrides = {k: _get(config, f"model.{k}")
                 for k in ("dtype", "param_dtype", "remat", "attention")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return architecture(source, overrides, _get(config, "model.tiny", {}) or {})


def model_config_from(config) -> ModelConfig:
    """The architecture named by config.model.source (a preset, 'smollm2', 'tiny', a HF
    directory or config.json, or a .gguf file), with dtype/param_dtype/remat from config.model.
    A path that does not exist here but is named after a preset (/models/llama2_7b, as the
    pod configs default to) gives that preset, so that pod configs plan on any machine."""
    return _model_config_and_origin(config)[0]


def _mesh_shape(config, num_devices: int | None) -> tuple[tuple[str, int], ...]:
    """config.mesh as ((axis, size), ...), a -1 resolved against `num_devices` (this
    machine's device count when None)."""
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
    return tuple(zip(axes, (int(s) for s in shape)))


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
    mesh_shape = _mesh_shape(config, num_devices)
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
    on_policy = phase in ON_POLICY_PHASES
    # Examples per optimizer step: train.batch_size, else the phase's own key
    # (self_judge.prompts_per_step x samples_per_prompt / 2 chosen/rejected pairs;
    # data.batch_size: rows for JSFT/SFT, pairs for DPO).
    batch = _get(config, "train.batch_size")
    step_prompts = None
    if batch is None and on_policy:
        step_prompts = _get(config, "self_judge.prompts_per_step")
        if step_prompts is not None:
            batch = int(step_prompts) * max(1, int(_get(config, "self_judge.samples_per_prompt",
                                                        2)) // 2)
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
    prompts = (int(step_prompts if step_prompts is not None else batch) if on_policy
               else int(_get(config, "sampling.batch_size", 8)))
    principles = _get(config, "judge.principles", ("helpfulness",))
    model, origin = _model_config_and_origin(config)
    return PlanInputs(
        model=model,
        model_source=origin,
        phase=phase,
        mesh_shape=mesh_shape,
        rules=rules,
        batch_size=int(batch),
        grad_accum=int(_get(config, "train.grad_accum", 1)),
        seq_len=int(seq_len),
        rows_per_example=2 if preference else 1,
        loss_chunk=int(_get(config, "train.loss_chunk", 0)),
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
