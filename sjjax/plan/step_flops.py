"""FLOPs of one optimizer step (global) and of one sampling call, from the model's
shapes and the plan's batch (formulas: docs/scale.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sjjax.plan.tensors import projection_shapes

if TYPE_CHECKING:
    from sjjax.plan.inputs import PlanInputs


def flops(inputs: PlanInputs) -> dict[str, float]:
    """FLOPs of one optimizer step (global) and of one sampling call.

    N = weight-matmul parameters touched per token (every projection + the LM head; the
    embedding lookup is not a matmul). Forward 2N per token; backward 4N (full FT: grads
    w.r.t. activations and weights) or 2N (LoRA: activations only, base frozen); LoRA
    adapters themselves 2 / 4 x their size. Attention (dense, as computed here: the
    causal half is masked, not skipped) 4 B T^2 H Dh per layer forward, twice that backward.
    Keys ending in `_seconds` are seconds; `ideal_step_seconds` is at 100% of peak.
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
