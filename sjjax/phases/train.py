"""Supervised phases on a fixed data set: JSFT, the SFT baseline and offline DPO.

    jsft  masked cross-entropy on SFT conversations + pairwise judgments (both orders)
    sft   the same conversations without judgments (baseline)
    dpo   DPO on the labelled pairs of the same sources (offline baseline)

All three share the loop: data stream -> jitted, sharded step -> log -> checkpoint,
and end by writing the final parameters that the next phase reads.
"""

from __future__ import annotations

import logging

import jax
import numpy as np

from sjjax.config import ConfigError
from sjjax.data import datasets
from sjjax.metrics import summary_line
from sjjax.phases.common import export_if_asked, load_policy
from sjjax.phases.self_samples import add_self_sample_pairs
from sjjax.train import loop
from sjjax.train.optim import make_optimizer
from sjjax.train.steps import LossSpec, make_dpo_step, make_sft_step

log = logging.getLogger("sjjax")


def validate(config) -> None:
    datasets.validate_data_config(config.data)
    if config.data.batch_size % config.train.grad_accum:
        raise ConfigError(f"config.data.batch_size={config.data.batch_size} is not a multiple "
                          f"of config.train.grad_accum={config.train.grad_accum}")
    if config.train.loss_normalization not in ("token", "example"):
        raise ConfigError("config.train.loss_normalization: expected token or example")
    if config.phase == "dpo" and config.dpo.beta <= 0:
        raise ConfigError("config.dpo.beta: must be > 0")


def micro_batches(batch: dict, accum: int, pairs: bool) -> dict:
    """[rows, ...] -> [accum, rows / accum, ...]; for DPO each micro-batch keeps its
    chosen rows first and their rejected rows after (and `valid` [accum, p])."""
    if not pairs:
        return {k: v.reshape(accum, -1, *v.shape[1:]) for k, v in batch.items()}
    n = len(batch["tokens"]) // 2
    p = n // accum
    order = np.concatenate([np.concatenate([np.arange(a * p, (a + 1) * p),
                                            n + np.arange(a * p, (a + 1) * p)])
                            for a in range(accum)])
    out = {k: v[order].reshape(accum, 2 * p, *v.shape[1:]) for k, v in batch.items()
           if k in ("tokens", "mask", "loss_mask")}
    out["valid"] = (batch["kind"][:n] >= 0).reshape(accum, p)
    return out


def run(config):
    phase = config.phase
    mode = {"jsft": "jsft", "sft": "sft", "dpo": "dpo"}[phase]
    pairs = mode == "dpo"
    memory = loop.PeakMemory()  # before any weights are loaded
    if mode == "jsft":
        add_self_sample_pairs(config)  # optional: judge data from a model's own samples
    policy = load_policy(config)
    tok = policy.tokenizer
    prepared = datasets.prepare(config, tok, mode)
    stream = datasets.make_stream(config, prepared, tok.pad_token_id)
    total = int(config.train.steps or stream.total_steps or 0)
    if total <= 0:
        raise ConfigError("config.train.steps: 0 and the data stream is endless "
                          "(config.data.num_epochs=None): set one of them")
    ctx = loop.open_run(config, policy.model_config, tok, total, memory)
    mesh, rules = ctx.mesh, ctx.rules

    weights = loop.prepare_weights(policy, config, mesh, rules, needs_reference=pairs)
    use_lora, graphdef = weights.use_lora, weights.graphdef
    frozen, ref = weights.frozen, weights.ref

    optimizer, schedule = make_optimizer(config.train, total)
    state = loop.init_state(weights.trainable, optimizer, config.seed, mesh)
    state, meta = loop.restore_state(ctx, state)
    if meta.get("data"):
        stream.set_state(meta["data"])
    spec = LossSpec(lora=use_lora, normalize=config.train.loss_normalization,
                    judge_weight=config.train.judge_loss_weight, beta=config.dpo.beta,
                    dpo_type=config.dpo.loss_type, label_smoothing=config.dpo.label_smoothing)
    builder = make_dpo_step if pairs else make_sft_step
    step_core = builder(graphdef, optimizer, spec, schedule)
    extra = (frozen, ref) if pairs else (frozen,)
    compiled = {}

    progress = loop.Progress(total, ctx.start_step, phase, config.log.progress)
    last_saved = ctx.start_step or None
    throughput = loop.Throughput()
    for step in range(ctx.start_step, total):
        batch = micro_batches(next(stream), config.train.grad_accum, pairs)
        real_tokens = int(batch["mask"].sum())
        batch = loop.batch_to_device(batch, mesh, rules)
        length = batch["tokens"].shape[-1]
        if length not in compiled:  # one compilation per length bucket, ahead of time
            with memory.excluded():
                compiled[length] = loop.compile_step(step_core, state, extra, batch,
                                                     mesh).lower(state, *extra, batch).compile()
            memory.add_compiled(compiled[length])
        state, metrics = compiled[length](state, *extra, batch)
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        loop.check_finite(metrics, step + 1, config.run_dir, last_saved)
        throughput.add(steps=1, tokens=real_tokens)
        if (step + 1) % config.log.every_steps == 0 or step + 1 == total:
            metrics.update(throughput.rates())
            ctx.metrics.log(step + 1, metrics)
        progress.update({"loss": metrics["loss"]})
        if ctx.checkpointer.should_save(step + 1) or step + 1 == total:
            ctx.checkpointer.save(step + 1, state, {"phase": phase, "data": stream.get_state()})
            last_saved = step + 1
    progress.close()

    final = weights.final(state.trainable)
    summary = loop.summarize(ctx.metrics.path, phase)
    summary["examples"] = len(prepared)
    summary["example_stats"] = prepared.stats.get("examples", {})
    # The longest padded batch this run compiled for: where its peak memory was reached.
    summary["max_batch_length"] = max(compiled, default=0)
    loop.finish(ctx, final, total, summary)
    export_if_asked(config, policy.model_config, final, tok)
    print(summary_line(phase, summary, ["steps", "loss", "sft_loss", "judge_loss",
                                        "judge_accuracy", "tokens_per_s"]), flush=True)
    return summary
