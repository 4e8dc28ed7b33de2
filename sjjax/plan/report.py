"""The plan as text: the one-line verdict and the table `python -m sjjax.plan` prints
(memory in GiB = 2**30 bytes per device and over the mesh, FLOPs with SI prefixes)."""

from __future__ import annotations

from sjjax.plan.devices import DEVICES
from sjjax.plan.memory import Plan
from sjjax.plan.tensors import GIB, GROUPS


def _gib(n: float) -> str:
    return f"{n / GIB:.3f}"


def _num(x: float) -> str:
    """FLOPs with an SI prefix: 1.4e15 -> '1.4 PFLOP'."""
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}FLOP"
    return f"{x:.3g} FLOP"


def verdict(plan: Plan) -> str:
    """'FITS: peak ... GiB of ... GiB per device (headroom ...)' or 'DOES NOT FIT: ...'."""
    cap = plan.inputs.device_memory_gib
    if plan.fits:
        return (f"FITS: peak {plan.peak / GIB:.2f} GiB of {cap:g} GiB per device "
                f"(headroom {plan.headroom / GIB:.2f} GiB, "
                f"{100 * plan.headroom / plan.capacity:.0f}%)")
    return (f"DOES NOT FIT: peak {plan.peak / GIB:.2f} GiB of {cap:g} GiB per device "
            f"(short by {-plan.headroom / GIB:.2f} GiB)")


def _header(plan: Plan) -> list[str]:
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
    return lines


def _memory_table(plan: Plan) -> list[str]:
    i = plan.inputs
    width = max([len(r.name) + 7 for r in plan.rows] + [45])
    lines = ["", f"  {'memory':<{width}} {'GiB/device':>10} {'GiB global':>10}   formula"]
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
    return lines


def _flops_lines(plan: Plan) -> list[str]:
    i, f = plan.inputs, plan.flops
    lines = [""]
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
    return lines


def format_plan(plan: Plan) -> str:
    """The whole report: inputs, memory table, FLOPs, warnings, then the verdict line."""
    lines = _header(plan) + _memory_table(plan) + _flops_lines(plan)
    lines += [f"  warning: {w}" for w in plan.warnings]
    lines += ["", verdict(plan)]
    return "\n".join(lines)
