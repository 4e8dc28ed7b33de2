"""Pure, jit-able training steps: (state, frozen, batch) -> (state, metrics).

`state.trainable` is what the optimizer updates: the full parameters, or only the
LoRA adapters. `frozen` is what it does not: nothing ({}) for full fine-tuning, the
base weights with LoRA (shared by the policy, the reference and the judge: the
reference is the same weights with adapters off). For full-parameter DPO, `ref`
holds the reference weights.

Batches carry a leading micro-batch axis [A, b, ...] for gradient accumulation: the
step scans over it, summing the loss numerator, denominator and gradients, and
divides once, so A micro-batches of b give exactly the update of one batch of A*b.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sjjax.losses import (chunked_token_logprobs, cross_entropy_terms_from_logprobs, dpo_loss,
                          sequence_logprobs_from_logprobs)
from sjjax.model.transformer import merge_params
from sjjax.train.optim import frozen_parts


class TrainState(NamedTuple):
    trainable: Any       # params or LoRA adapters (nested dict)
    opt_state: Any
    step: jax.Array      # [] int32
    key: jax.Array       # [2] uint32 raw PRNG key data (saveable by Orbax)


@dataclasses.dataclass(frozen=True)
class LossSpec:
    lora: bool = False
    normalize: str = "token"       # token | example
    judge_weight: float = 1.0      # weight of judgment examples in the SFT loss
    beta: float = 0.1
    dpo_type: str = "sigmoid"      # sigmoid | hinge | ipo
    label_smoothing: float = 0.0
    nll_weight: float = 0.0        # RPO: alpha x the chosen response's per-token NLL
    # Sequence positions per chunk of the loss's logits (0 = all at once): the
    # [b, T, V] float32 logits are never held whole (see chunked_token_logprobs).
    loss_chunk: int = 512
    # (freeze_embeddings, freeze_layers) of config.train: the logged gradient norm is
    # that of the trainable part, the one clipping reads (sjjax.train.optim.frozen_parts)
    frozen: tuple = (False, 0)

    @classmethod
    def from_config(cls, config, lora: bool) -> "LossSpec":
        """The loss settings of config.train and config.dpo (the one place they are read)."""
        t, d = config.train, config.dpo
        return cls(lora=lora, normalize=t.loss_normalization,
                   judge_weight=t.judge_loss_weight, beta=d.beta, dpo_type=d.loss_type,
                   label_smoothing=d.label_smoothing, nll_weight=d.get("nll_weight", 0.0),
                   loss_chunk=t.loss_chunk,
                   frozen=(bool(t.get("freeze_embeddings", False)),
                           int(t.get("freeze_layers", 0))))


def _model(graphdef, trainable, frozen, spec: LossSpec):
    params, lora = (frozen, trainable) if spec.lora else (trainable, {})
    return merge_params(graphdef, params, lora)


def _token_logprobs(model, mb, spec: LossSpec, lora: bool = True):
    """-> (final hidden states [b, T, d], token log-probs [b, T]) of one micro-batch."""
    hidden, _ = model(mb["tokens"], mb["mask"], lora=lora, logits="none")
    logp = chunked_token_logprobs(hidden, mb["tokens"], lambda h: model.logits(h, lora),
                                  spec.loss_chunk)
    return hidden, logp


def _accumulate(micro_fn, trainable, batch):
    """Scans micro_fn(trainable, micro_batch) -> ((num, den, sums), grads) over [A, ...]."""
    grad_fn = jax.value_and_grad(micro_fn, has_aux=True)

    def body(carry, mb):
        (num, (den, sums)), grads = grad_fn(trainable, mb)
        return jax.tree.map(jnp.add, carry, (num, den, sums, grads)), None

    first = jax.tree.map(lambda x: x[0], batch)
    (num, (den, sums)), grads = jax.eval_shape(grad_fn, trainable, first)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (num, den, sums, grads))
    (num, den, sums, grads), _ = jax.lax.scan(body, zeros, batch)
    return num, den, sums, grads


def _apply(optimizer, state: TrainState, grads, den, spec: LossSpec):
    """-> (the updated state, the norm of the trainable part of the gradient)."""
    grads = jax.tree.map(lambda g: g / jnp.maximum(den, 1e-8), grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    if any(spec.frozen):
        grads, _ = frozen_parts(*spec.frozen).update(grads, optax.EmptyState())
    norm = optax.tree.norm if hasattr(optax, "tree") else optax.global_norm  # older optax
    return TrainState(trainable, opt_state, state.step + 1, state.key), norm(grads)


def make_sft_step(graphdef, optimizer, spec: LossSpec, schedule=None):
    """Masked cross-entropy on SFT and judgment examples (JSFT, SFT).

    batch: tokens, mask, loss_mask [A, b, T]; kind [A, b] (0 = sft, 1 = judgment).
    """

    def micro(trainable, frozen, mb):
        model = _model(graphdef, trainable, frozen, spec)
        hidden, logp = _token_logprobs(model, mb, spec)
        is_judge = mb["kind"] == 1
        weights = jnp.where(is_judge, spec.judge_weight, 1.0)
        num, den = cross_entropy_terms_from_logprobs(logp, mb["loss_mask"], spec.normalize,
                                                     weights)
        sums = jax.lax.stop_gradient(_sft_stats(model, hidden, logp, mb, is_judge))
        return num, (den, sums)

    def step(state: TrainState, frozen, batch):
        num, den, sums, grads = _accumulate(
            lambda t, mb: micro(t, frozen, mb), state.trainable, batch)
        new_state, grad_norm = _apply(optimizer, state, grads, den, spec)
        def ratio(num_, den_):  # NaN when the batch has none of that kind (not logged)
            return jnp.where(den_ > 0, num_ / jnp.maximum(den_, 1), jnp.nan)

        metrics = {
            "loss": num / jnp.maximum(den, 1e-8),
            "grad_norm": grad_norm,
            "sft_loss": ratio(sums["sft_nll"], sums["sft_tokens"]),
            # judge_loss / judge_accuracy read a judgment's first target token: its
            # decision, or, for a check template, the start of its check (always "A");
            # judge_target_loss is the per-token NLL of the whole judgment target.
            "judge_loss": ratio(sums["judge_nll"], sums["judge_examples"]),
            "judge_accuracy": ratio(sums["judge_correct"], sums["judge_examples"]),
            "judge_target_loss": ratio(sums["judge_target_nll"], sums["judge_tokens"]),
            "target_tokens": sums["sft_tokens"] + sums["judge_tokens"],
            "judge_examples": sums["judge_examples"],
        }
        if schedule is not None:
            metrics["learning_rate"] = schedule(state.step)
        return new_state, metrics

    return step


def _sft_stats(model, hidden, logp, mb, is_judge):
    """Sums for logging: NLL per kind, and the judgment decision-token accuracy."""
    mask = mb["loss_mask"].astype(jnp.float32)
    nll = -logp * mask
    judge = is_judge.astype(jnp.float32)
    # The decision token is a judgment example's first target; its logits [b, V] are
    # recomputed from the one hidden state that predicts it.
    first = jnp.argmax(mb["loss_mask"], axis=1)
    decision_hidden = jnp.take_along_axis(hidden, (first - 1)[:, None, None], axis=1)[:, 0]
    decision_logits = model.logits(decision_hidden)
    target = jnp.take_along_axis(mb["tokens"], first[:, None], axis=1)[:, 0]
    correct = (jnp.argmax(decision_logits, axis=-1) == target).astype(jnp.float32)
    decision_nll = jnp.take_along_axis(nll, first[:, None], axis=1)[:, 0]
    return {
        "sft_nll": (nll.sum(1) * (1 - judge)).sum(),
        "sft_tokens": (mask.sum(1) * (1 - judge)).sum(),
        "judge_nll": (decision_nll * judge).sum(),
        "judge_target_nll": (nll.sum(1) * judge).sum(),
        "judge_tokens": (mask.sum(1) * judge).sum(),
        "judge_correct": (correct * judge).sum(),
        "judge_examples": judge.sum(),
    }


def make_dpo_step(graphdef, optimizer, spec: LossSpec, schedule=None):
    """DPO with chosen and rejected in one forward; reference log-probs without
    gradients (LoRA: the same base with adapters off; full: `ref` weights).

    batch: tokens, mask, loss_mask [A, 2p, T] with the p chosen rows first, then the
    p rejected rows; valid [A, p] (False = pair excluded, e.g. identical responses).
    """

    def micro(trainable, frozen, ref, mb):
        p = mb["valid"].shape[0]
        policy = _model(graphdef, trainable, frozen, spec)
        logps = sequence_logprobs_from_logprobs(_token_logprobs(policy, mb, spec)[1],
                                                mb["loss_mask"])
        if spec.lora:
            ref_logp = _token_logprobs(policy, mb, spec, lora=False)[1]
        else:
            ref_logp = _token_logprobs(merge_params(graphdef, ref), mb, spec)[1]
        ref_logps = jax.lax.stop_gradient(
            sequence_logprobs_from_logprobs(ref_logp, mb["loss_mask"]))
        out = dpo_loss(logps[:p], logps[p:], ref_logps[:p], ref_logps[p:], spec.beta,
                       spec.dpo_type, mb["valid"], spec.label_smoothing, spec.nll_weight,
                       chosen_tokens=mb["loss_mask"][:p].sum(axis=1))
        v = mb["valid"].astype(jnp.float32)
        sums = jax.lax.stop_gradient({
            "rewards/chosen": (out.chosen_rewards * v).sum(),
            "rewards/rejected": (out.rejected_rewards * v).sum(),
            "rewards/accuracies": ((out.chosen_rewards > out.rejected_rewards) * v).sum(),
            "rewards/margins": ((out.chosen_rewards - out.rejected_rewards) * v).sum(),
            "logps/chosen": (logps[:p] * v).sum(),
            "logps/rejected": (logps[p:] * v).sum(),
            "nll/chosen": (out.chosen_nll * v).sum(),
        })
        return out.losses.sum(), (v.sum(), sums)

    def step(state: TrainState, frozen, ref, batch):
        num, den, sums, grads = _accumulate(
            lambda t, mb: micro(t, frozen, ref, mb), state.trainable, batch)
        new_state, grad_norm = _apply(optimizer, state, grads, den, spec)
        metrics = {k: v / jnp.maximum(den, 1.0) for k, v in sums.items()}
        metrics.update(loss=num / jnp.maximum(den, 1.0), grad_norm=grad_norm, pairs=den)
        if schedule is not None:
            metrics["learning_rate"] = schedule(state.step)
        return new_state, metrics

    return step
