"""The memory model: a `Plan` of per-device bytes for what a phase keeps (parameters,
reference, optimizer state), what a training step adds (gradients, activations), and
what sampling and judging add (KV caches, logits); its totals, peak and fit."""

from __future__ import annotations

import dataclasses
from typing import Any

from sjjax.plan.activations import (SAMPLING_LOGIT_COPIES, activation_rows,
                                    layer_activation_tensors)
from sjjax.plan.step_flops import flops
from sjjax.plan.inputs import PlanInputs, inputs_from_config
from sjjax.plan.tensors import (GIB, GROUPS, Row, Tensor, as_dtype, base_param_tensors,
                                batch_shards, dtype_bytes, lora_param_tensors, rows_from,
                                shard_factor)


@dataclasses.dataclass
class Plan:
    """The memory rows (bytes), their totals per group and peaks, the FLOPs and the
    warnings of one config on one mesh."""
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


def _training_rows(inputs: PlanInputs, base: list[Tensor], lora: list[Tensor],
                   warnings: list[str]) -> list[Row]:
    """Reference copy, optimizer state, gradients and activations of a training step."""
    p = dtype_bytes(inputs.model.param_dtype)
    rows: list[Row] = []
    trainable = lora if inputs.lora_enabled else base
    t_bytes = 4 if inputs.lora_enabled else p
    if inputs.reference_copy:
        rows.append(rows_from("persistent", "reference model (frozen copy)", base, inputs,
                              "= parameters (full-FT preference training)"))
    if t_bytes != 4:
        rows.append(rows_from("persistent", "optimizer: float32 master copy",
                              as_dtype(trainable, 4), inputs, "trainable x 4 (params not f32)"))
    rows.append(rows_from("persistent", "optimizer: AdamW mu, nu (float32)",
                          as_dtype(trainable, 4, 2), inputs, "trainable x 2 x 4"))
    rows.append(rows_from("step", "gradients", as_dtype(trainable, t_bytes), inputs,
                          f"trainable x {t_bytes}"))
    if inputs.grad_accum > 1:
        # train/steps.py scans the micro-batches with the gradient sum as the carry.
        rows.append(rows_from("step", "gradient accumulator", as_dtype(trainable, t_bytes),
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
    return rows


def _sampling_rows(inputs: PlanInputs, warnings: list[str]) -> list[Row]:
    """The KV cache and the per-step logits of one sampling call."""
    cfg = inputs.model
    c = dtype_bytes(cfg.dtype)
    r = inputs.sampling_prompts * inputs.samples_per_prompt
    s = inputs.prompt_len + inputs.max_new_tokens
    kv = Tensor("kv", (cfg.num_layers, r, s, cfg.num_kv_heads, cfg.head_dim), c,
                ("layers", "batch", "cache_length", "kv_heads", "head_dim"), 2)
    rows = [rows_from("sampling", f"KV cache ({r} rows x {s} slots)", [kv], inputs,
                      "L x rows x (prompt + new) x K x Dh x 2 x dtype")]
    if shard_factor(("batch",), (r,), inputs) < batch_shards(inputs):
        warnings.append(f"sampling {r} rows does not divide the {batch_shards(inputs)} "
                        f"batch shards: the KV cache is replicated")
    rows.append(rows_from("sampling", f"sampling logits ({SAMPLING_LOGIT_COPIES} copies)", [
        Tensor("logits", (r, cfg.vocab_size), 4, ("batch", "vocab"), SAMPLING_LOGIT_COPIES)],
        inputs, f"{SAMPLING_LOGIT_COPIES} x rows x V x 4"))
    return rows


def _judge_rows(inputs: PlanInputs, warnings: list[str]) -> list[Row]:
    """The shared-prefix KV caches and the prefix forward of one judge call."""
    cfg = inputs.model
    c = dtype_bytes(cfg.dtype)
    r, s = inputs.judge_rows, inputs.judge_len
    kv = [Tensor(name, (cfg.num_layers, n, s, cfg.num_kv_heads, cfg.head_dim), c,
                 ("layers", "batch", "cache_length", "kv_heads", "head_dim"), 2)
          for name, n in (("prefix", r), ("both orders", 2 * r))]
    rows = [rows_from("judge", f"judge KV caches ({r} + {2 * r} rows x {s} slots)", kv,
                      inputs, "L x (rows + 2 rows) x judge len x K x Dh x 2 x dtype "
                      "(shared prefix, then repeated for the 2 orders)")]
    if shard_factor(("batch",), (r,), inputs) < batch_shards(inputs):
        warnings.append(f"judge calls of {r} prompts (judge.batch_size x principles) do not "
                        f"divide the {batch_shards(inputs)} batch shards: the judge's prefix "
                        f"cache and forward are replicated; use a multiple of "
                        f"{batch_shards(inputs)}")
    rows.append(rows_from("judge", "judge prefix forward, one layer",
                          layer_activation_tensors(inputs, r, s)["none"], inputs,
                          "remat=none per-layer set at judge rows and length"))
    return rows


def make_plan(inputs: PlanInputs) -> Plan:
    """Every memory row of the phase (per device and global bytes), the totals of each
    group, the peaks (persistent + step / sampling / judge), FLOPs and warnings."""
    cfg = inputs.model
    warnings: list[str] = []
    base = base_param_tensors(cfg)
    lora = (lora_param_tensors(cfg, inputs.lora_rank, inputs.lora_targets)
            if inputs.lora_enabled else [])
    rows: list[Row] = [rows_from("persistent", f"parameters ({cfg.param_dtype})", base, inputs,
                                 "base params x param bytes, sharded by the rules")]
    if inputs.runtime_overhead_gib:
        overhead = int(inputs.runtime_overhead_gib * GIB)
        rows.append(Row("persistent", "process runtime overhead (host CPU)", overhead,
                        overhead * inputs.num_devices,
                        "plan.runtime_overhead_gib, measured (docs/scale.md)"))
    if lora:
        rows.append(rows_from("persistent", "LoRA adapters (float32)", lora, inputs,
                              "L x r x (in + out) per target x 4"))
    if inputs.training:
        rows += _training_rows(inputs, base, lora, warnings)
    if inputs.sampling:
        rows += _sampling_rows(inputs, warnings)
    if inputs.judging:
        rows += _judge_rows(inputs, warnings)

    totals = {g: sum(r.per_device for r in rows if r.group == g) for g in GROUPS}
    totals["training_peak"] = totals["persistent"] + totals["step"] if inputs.training else 0
    totals["sampling_peak"] = totals["persistent"] + totals["sampling"] if inputs.sampling else 0
    totals["judge_peak"] = totals["persistent"] + totals["judge"] if inputs.judging else 0
    totals["peak"] = max(totals["training_peak"], totals["sampling_peak"], totals["judge_peak"],
                         totals["persistent"])
    return Plan(inputs, rows, totals, flops(inputs), warnings)


def plan_config(config, **options) -> Plan:
    """The plan of a sjjax config; `options` as `inputs_from_config` takes them."""
    return make_plan(inputs_from_config(config, **options))
