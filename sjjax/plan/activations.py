"""Activation memory of a training step: one decoder layer's saved residuals per remat
policy and attention implementation, and the rows for a micro-batch's forward + backward
(saved layers, the working layer, the loss's float32 logits whole or one chunk at a time,
FSDP's gathered weights). Formulas: docs/scale.md."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from sjjax.plan.tensors import (Row, Tensor, as_dtype, dtype_bytes, layer_kernels, rows_from,
                                shard_factor)

if TYPE_CHECKING:
    from sjjax.plan.inputs import PlanInputs

# Calibration knobs (see docs/scale.md). LOGITS_COPIES: float32 [B, T, V] arrays live
# at the loss's backward (the saved log-softmax, its gradient, the logits' gradient).
# WORKING_LAYERS: layers' worth of the remat=none per-layer set live on top of what is
# saved (the layer being differentiated, recomputed first under remat).
# SAMPLING_LOGIT_COPIES: float32 [R, V] arrays per decode step (logits, sorted, softmax,
# cumsum for top-p).
LOGITS_COPIES = 3
# LOGITS_CHUNK_COPIES: float32 [B, chunk, V] arrays live with train.loss_chunk < T (one
# chunk's recomputed logits and their gradient; calibrated on XLA:CPU's compiled step).
LOGITS_CHUNK_COPIES = 2
WORKING_LAYERS = {"none": 1, "dots": 1, "full": 1}
SAMPLING_LOGIT_COPIES = 4

_BTE = ("batch", "length", "embed")
_HEADS = ("batch", "length", "heads", "head_dim")
_SCORES = ("batch", "heads", "length", None)


def _norm_residuals(name: str, b: int, t: int, d: int, c: int) -> list[Tensor]:
    """RMSNorm keeps its float32 input, the float32 normalised value and its output."""
    return [Tensor(f"{name}: f32 input + normed", (b, t, d), 4, _BTE, 2),
            Tensor(f"{name}: output", (b, t, d), c, _BTE)]


def backend_of(inputs: PlanInputs) -> str:
    """The JAX backend of the planned device: tpu, gpu, or cpu (no device named)."""
    if inputs.device is None:
        return "cpu"
    return "tpu" if inputs.device.startswith("v") else "gpu"


def attention_kernel(inputs: PlanInputs, seq_len: int | None = None) -> str:
    """The attention implementation the planned step runs (model.attention resolved for
    the planned device): xla, cudnn or splash."""
    from sjjax.model.attention import resolve
    cfg, t = inputs.model, seq_len or inputs.seq_len
    return resolve(cfg.attention, dtype=cfg.compute_dtype, head_dim=cfg.head_dim, q_len=t,
                   kv_len=t, backend=backend_of(inputs), num_devices=inputs.num_devices)


def layer_activation_tensors(inputs: PlanInputs, rows: int,
                             seq_len: int | None = None) -> dict[str, list[Tensor]]:
    """One decoder layer's saved activations for `rows` sequences of T tokens, per remat
    policy, as `jax.ad_checkpoint.print_saved_residuals` lists them for this model.

    "none": everything the backward reads; "dots": what `dots_with_no_batch_dims_saveable`
    keeps (projection outputs the backward needs: q, k, v before RoPE, o_proj out, gate,
    up; LoRA x.A); "full": the layer input (the scan carry). With XLA's attention the
    [B, H, T, T] scores and probabilities are saved; a flash kernel (cudnn, splash) keeps
    only its output and the float32 softmax statistics [B, H, T] (not verified against a
    compiled GPU/TPU step yet).
    """
    cfg = inputs.model
    b, t = rows, seq_len or inputs.seq_len
    d, h, k, dh, f = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                      cfg.intermediate_size)
    c = dtype_bytes(cfg.dtype)
    mlp = ("batch", "length", "mlp")
    q = Tensor("q", (b, t, h, dh), c, _HEADS)
    kv = Tensor("k, v", (b, t, k, dh), c, ("batch", "length", "kv_heads", "head_dim"), 2)
    lora = []
    if inputs.lora_enabled:
        lora = [Tensor("LoRA x.A", (b, t, inputs.lora_rank), c,
                       ("batch", "length", "lora_rank"), len(inputs.lora_targets))]
    if attention_kernel(inputs, t) == "xla":
        scores = [Tensor("masked scores f32", (b, h, t, t), 4, _SCORES),
                  Tensor("attention probs", (b, h, t, t), c, _SCORES),
                  Tensor("softmax max, sum f32", (b, h, t, 1), 4, _SCORES, 2)]
    else:
        scores = [Tensor("flash softmax statistics f32", (b, h, t, 1), 4, _SCORES)]
    none = [
        *_norm_residuals("input_norm", b, t, d, c), q, kv, *scores,
        Tensor("attention out", (b, t, h, dh), c, _HEADS),
        *_norm_residuals("post_attn_norm", b, t, d, c),
        Tensor("gate, up, silu terms, product", (b, t, f), c, mlp, 6),
        *lora]
    dots = [Tensor("x (layer input)", (b, t, d), c, _BTE), q, kv,
            Tensor("o_proj out", (b, t, d), c, _BTE),
            Tensor("gate, up", (b, t, f), c, mlp, 2), *lora]
    full = [Tensor("x (layer input)", (b, t, d), c, _BTE)]
    return {"none": none, "dots": dots, "full": full}


def activation_rows(inputs: PlanInputs) -> list[Row]:
    """Activation memory of one training micro-batch (forward + backward), per device."""
    cfg = inputs.model
    rows = inputs.micro_batch_rows
    t, l, v, d, h = (inputs.seq_len, cfg.num_layers, cfg.vocab_size, cfg.hidden_size,
                     cfg.num_heads)
    c, p = dtype_bytes(cfg.dtype), dtype_bytes(cfg.param_dtype)
    layer = layer_activation_tensors(inputs, rows)
    saved = [dataclasses.replace(x, count=x.count * l) for x in layer[cfg.remat]]
    working_layers = WORKING_LAYERS[cfg.remat]
    working = [dataclasses.replace(x, count=x.count * working_layers) for x in layer["none"]]
    what = {"none": "all", "dots": "projection outputs", "full": "layer inputs"}[cfg.remat]
    shape = f"{rows} rows x {t} tokens"
    out = [rows_from("step", f"activations saved x{l} layers (remat={cfg.remat}: {what})",
                     saved, inputs, f"L x per-layer set ({shape}); docs/scale.md")]
    working_row = rows_from("step", f"activations working set ({working_layers} layer(s))",
                            working, inputs, f"{working_layers} x per-layer set of remat=none")
    kernel = attention_kernel(inputs)
    if cfg.remat == "none" and kernel == "xla":
        out.append(rows_from("step", "attention mask broadcast (bool)", [
            Tensor("mask", (rows, h, t, t), 1, _SCORES)], inputs, "B x H x T x T x 1"))
    if cfg.remat == "none" and c != p:
        out.append(rows_from("step", f"layer weights cast to {cfg.dtype} (saved)",
                             as_dtype(layer_kernels(cfg), c), inputs,
                             f"layer kernels x {c}, sharded like the params"))
    if kernel == "cudnn":  # the boolean mask enters cuDNN as an additive bias
        out.append(rows_from("step", f"attention bias ({cfg.dtype})", [
            Tensor("bias", (rows, 1, t, t), c, ("batch", None, "length", None))],
            inputs, f"B x T x T x {c}"))
    chunk = inputs.loss_chunk
    if 0 < chunk < t:
        logits = rows_from("step", f"loss logits, one chunk of {chunk} and its grad (f32)", [
            Tensor("logits", (rows, chunk, v), 4, ("batch", "length", "vocab"),
                   LOGITS_CHUNK_COPIES)], inputs,
            f"{LOGITS_CHUNK_COPIES} x B x chunk x V x 4 (train.loss_chunk)")
    else:
        logits = rows_from("step", "log-softmax, its grad, logits grad (f32)", [
            Tensor("logits", (rows, t, v), 4, ("batch", "length", "vocab"), LOGITS_COPIES)],
            inputs, f"{LOGITS_COPIES} x B x T x V x 4")
    # The loss's buffers are freed before the first layer's backward starts, so the
    # layer working set only adds what exceeds them (XLA reuses that memory).
    out += [
        dataclasses.replace(
            working_row, name=working_row.name + ", beyond the loss buffers it reuses",
            per_device=max(0, working_row.per_device - logits.per_device),
            global_bytes=max(0, working_row.global_bytes - logits.global_bytes),
            formula=f"max(0, {working_row.formula} - the loss row)"),
        rows_from("step", "final norm residuals", _norm_residuals("final_norm", rows, t, d, c),
                  inputs, "B x T x d x (4 + 4 + dtype)"),
        rows_from("step", "attention mask (bool)", [
            Tensor("mask", (rows, 1, 1, t, t), 1, ("batch", None, None, "length", None))],
            inputs, "B x T x T x 1"),
        logits,
    ]
    one_layer = [dataclasses.replace(x, shape=x.shape[1:], names=x.names[1:])
                 for x in layer_kernels(cfg)]
    if any(shard_factor(x.names, x.shape, inputs) > 1 for x in one_layer):
        # Sharded weights are all-gathered per layer for the matmuls; in full fine-tuning
        # the layer's whole weight gradient also exists before its reduce-scatter.
        gathered = as_dtype(one_layer, c) + ([] if inputs.lora_enabled
                                             else as_dtype(one_layer, p))
        total = sum(x.global_bytes for x in gathered)
        out.append(Row("step", "one layer's gathered weights" +
                       ("" if inputs.lora_enabled else " + weight grads"), total, total,
                       f"layer params x {c}" + ("" if inputs.lora_enabled else f" + x {p}")
                       + ", unsharded (FSDP)"))
    return out
