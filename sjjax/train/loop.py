"""The training loop shared by JSFT, SFT, offline DPO and self-judge.

In order: mesh -> shard the weights by their logical axes -> build (or restore) the
train state -> compile the step with explicit in/out shardings and the state donated
-> iterate: step, log, checkpoint -> final parameters for the next phase.

A killed run resumes from its last checkpoint when the same command is rerun: the
state (weights, optimizer, step, PRNG key) and the data stream position come back,
so the final parameters equal those of an uninterrupted run. A non-finite loss stops
the run before anything is saved, keeping the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from sjjax import fs, sharding
from sjjax.checkpoint import (RunCheckpointer, abstract_like, save_final, save_model_spec)
from sjjax.config import save_resolved
from sjjax.metrics import MetricsLogger
from sjjax.model.transformer import logical_axes
from sjjax.train.steps import TrainState

log = logging.getLogger("sjjax")


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


def make_run_mesh(config):
    return sharding.make_mesh(tuple(config.mesh.shape), tuple(config.mesh.axes))


def merge_lora(params: dict, lora: dict, scale: float) -> dict:
    """Base weights with the adapters folded in, per layer: W + scale * A @ B, where
    A [L, *in, r], B [L, r, *out] and W [L, *in, *out]."""

    def walk(p, l):
        out = dict(p)
        for key, value in l.items():
            if "lora_a" in value:
                delta = jax.vmap(lambda a, b: jnp.tensordot(a, b, axes=1))(
                    value["lora_a"], value["lora_b"])
                kernel = p[key]["kernel"]
                out[key] = dict(p[key], kernel=(kernel + scale * delta).astype(kernel.dtype))
            else:
                out[key] = walk(p[key], value)
        return out

    return walk(params, lora) if lora else params


@dataclasses.dataclass
class Weights:
    """The weight trees of a training phase.

    Full fine-tuning: `trainable` are the weights; `ref` is a frozen copy of the start
    when the phase needs a reference (DPO, self-judge), else {}.
    LoRA: `trainable` are the adapters; `frozen` is the one copy of the base weights,
    which also serves as the reference and the judge (adapters off).
    """
    graphdef: Any        # the policy's graph (with adapters under LoRA)
    trainable: dict
    frozen: dict
    ref: dict
    base: dict           # the starting weights (= frozen with LoRA, = ref without)
    lora_scale: float    # alpha / rank, or 0 without LoRA

    @property
    def use_lora(self) -> bool:
        return bool(self.lora_scale)

    def final(self, trainable: dict) -> dict:
        """Full weights for the next phase: adapters folded into the base under LoRA."""
        return merge_lora(self.base, trainable, self.lora_scale) if self.use_lora else trainable


def prepare_weights(policy, config, mesh, rules, needs_reference: bool) -> Weights:
    """Shards the policy's weights on the mesh and attaches LoRA adapters if enabled."""
    from flax import nnx

    from sjjax.model.loading import build_model
    from sjjax.model.transformer import split_params

    base = shard_weights(policy.params, mesh, rules)
    if config.lora.enabled:
        model = build_model(policy.model_config, policy.params)
        model.add_lora(config.lora.rank, config.lora.alpha, tuple(config.lora.targets),
                       nnx.Rngs(params=config.seed + 1))
        graphdef, _, lora = split_params(model)
        return Weights(graphdef, shard_weights(lora, mesh, rules), base, {}, base,
                       config.lora.alpha / config.lora.rank)
    # Full fine-tuning updates `trainable` in place (donated): keep a separate reference.
    trainable = jax.tree.map(jnp.copy, base) if needs_reference else base
    return Weights(policy.graphdef, trainable, {}, base if needs_reference else {}, base, 0.0)


@dataclasses.dataclass
class RunContext:
    """Everything a phase's loop needs, built once."""
    config: Any
    mesh: Any
    rules: Any
    checkpointer: RunCheckpointer
    metrics: MetricsLogger
    start_step: int
    meta: dict
    memory: "PeakMemory | None" = None


def shard_weights(tree: dict, mesh, rules) -> dict:
    if not tree:
        return tree
    return sharding.shard_tree(tree, logical_axes(tree), mesh, rules)


def batch_to_device(batch: dict, mesh, rules) -> dict:
    """numpy [A, b, ...] (this host's rows) -> global arrays sharded over data/fsdp on b."""
    out = {}
    for name, value in batch.items():
        value = np.asarray(value)
        names = (None, "batch") + (None,) * (value.ndim - 2)
        spec_sharding = sharding.named_sharding(mesh, names, rules)
        if jax.process_count() == 1:
            out[name] = jax.device_put(value, spec_sharding)
        else:
            out[name] = jax.make_array_from_process_local_data(spec_sharding, value)
    return out


def init_state(trainable: dict, optimizer, seed: int, mesh) -> TrainState:
    # Jitting init lets XLA give each optimizer moment its parameter's sharding.
    opt_state = jax.jit(optimizer.init)(trainable)
    key = jax.random.key_data(jax.random.key(seed))
    state = TrainState(trainable, opt_state, jnp.zeros((), jnp.int32), key)
    return jax.device_put(state, state_shardings(state, mesh))


def state_shardings(state: TrainState, mesh):
    """Each leaf's NamedSharding on `mesh`; leaves that are not laid out on the mesh
    (scalars such as the step or Adam's count) are replicated."""
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def of(x):
        s = getattr(x, "sharding", None)
        return s if isinstance(s, jax.sharding.NamedSharding) and s.mesh == mesh else replicated

    return jax.tree.map(of, state)


def compile_step(step_fn: Callable, state: TrainState, static_args: tuple, batch_example: dict,
                 mesh):
    """jit(step_fn) with explicit shardings: the state in and out keeps its layout and is
    donated (updated in place); weights that are not trained and batches keep theirs."""
    state_sh = state_shardings(state, mesh)
    arg_sh = tuple(jax.tree.map(lambda x: x.sharding, a) for a in static_args)
    batch_sh = jax.tree.map(lambda x: x.sharding, batch_example)
    return jax.jit(step_fn, in_shardings=(state_sh,) + arg_sh + (batch_sh,),
                   out_shardings=(state_sh, None), donate_argnums=(0,))


def open_run(config, model_config, tokenizer, total_steps: int,
             memory: "PeakMemory | None" = None) -> RunContext:
    """Creates run_dir (config, model spec), the mesh, the checkpointer and the logger,
    and finds the step to resume from."""
    run_dir = config.run_dir
    fs.makedirs(run_dir)
    save_resolved(config, run_dir)
    save_model_spec(run_dir, model_config, tokenizer)
    mesh = make_run_mesh(config)
    rules = sharding.normalize_rules(config.mesh.rules)
    checkpointer = RunCheckpointer(run_dir, keep=config.checkpoint.keep,
                                   every_steps=config.checkpoint.every_steps)
    start = checkpointer.latest_step() or 0
    metrics = MetricsLogger(run_dir, config.phase, config.log.tensorboard,
                            resume_step=start if start else None)
    if start:
        log.info("resuming %s from step %d of %d", run_dir, start, total_steps)
    return RunContext(config, mesh, rules, checkpointer, metrics, start, {},
                      memory or PeakMemory())


def restore_state(ctx: RunContext, state: TrainState) -> tuple[TrainState, dict]:
    """The checkpointed state (same shardings as `state`) and its meta, or (state, {})."""
    if not ctx.start_step:
        return state, {}
    abstract = abstract_like(state, state_shardings(state, ctx.mesh))
    restored, meta = ctx.checkpointer.restore(ctx.start_step, abstract)
    return TrainState(*restored), meta


def check_finite(metrics: dict, step: int, run_dir: str, last_saved: int | None):
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        kept = f"step {last_saved}" if last_saved else "no checkpoint yet"
        raise NonFiniteLossError(
            f"loss is {loss} at step {step}; stopping. The last good checkpoint in "
            f"{run_dir}/checkpoints is kept ({kept}). Lower train.learning_rate or check "
            f"the data.")


class Progress:
    """tqdm bar (or nothing) with throughput in the postfix."""

    def __init__(self, total: int, start: int, phase: str, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=start, desc=phase, dynamic_ncols=True)

    def update(self, postfix: dict):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v)
                                  for k, v in postfix.items()}, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def finish(ctx: RunContext, params_for_next_phase: dict, step: int, summary: dict):
    """Writes the final parameters (LoRA merged) and a one-line summary."""
    summary.update(ctx.memory.summary())
    save_final(ctx.config.run_dir, params_for_next_phase,
               {"step": int(step), "phase": ctx.config.phase, "summary": summary})
    ctx.metrics.close()
    ctx.checkpointer.close()


def current_rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def reset_peak_rss() -> None:
    """Restarts the kernel's high-water mark of this process's resident memory (Linux:
    writing 5 to /proc/self/clear_refs), so that a phase run after another in the same
    process (the pipeline) measures its own peak. A no-op where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes() -> int:
    """The process's peak resident memory since the last `reset_peak_rss` (VmHWM), or
    since it started where /proc is unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """A phase's peak resident memory above the process's memory when it started, with
    spans marked `excluded()` left out: XLA compilation is host work that `sjjax.plan`
    does not model (on an accelerator it never touches device memory), and on CPU the
    compiler's transient memory would otherwise decide the peak of a small model.

    Create it when the phase starts, before any weights are loaded."""

    def __init__(self):
        reset_peak_rss()
        self.start = current_rss_bytes()
        self.peak = self.start
        self.xla_peak = 0

    def add_compiled(self, compiled) -> None:
        """Notes a compiled step's device memory as XLA's buffer assignment plans it
        (arguments + outputs + temporaries - donated aliases, per device): the exact
        figure `sjjax.plan` estimates, where no device reports measured memory (CPU)."""
        try:
            m = compiled.memory_analysis()
            total = (m.argument_size_in_bytes + m.output_size_in_bytes
                     + m.temp_size_in_bytes - m.alias_size_in_bytes)
        except (AttributeError, NotImplementedError, TypeError):
            return
        self.xla_peak = max(self.xla_peak, int(total))

    @contextlib.contextmanager
    def excluded(self):
        self.peak = max(self.peak, peak_rss_bytes())
        try:
            yield
        finally:
            reset_peak_rss()  # the high-water mark restarts from the memory now

    def summary(self) -> dict:
        peak = max(self.peak, peak_rss_bytes())
        out = {"memory/peak_rss_gib": peak / 2 ** 30,
               "memory/peak_above_start_gib": max(peak - self.start, 0) / 2 ** 30}
        if self.xla_peak:
            out["memory/xla_step_gib"] = self.xla_peak / 2 ** 30
        return out


class Throughput:
    """Steps/s and tokens/s since the last `rates()` call."""

    def __init__(self):
        self.t, self.steps, self.tokens = time.perf_counter(), 0, 0

    def add(self, steps: int = 0, tokens: int = 0):
        self.steps += steps
        self.tokens += tokens

    def rates(self) -> dict:
        now = time.perf_counter()
        dt = max(now - self.t, 1e-9)
        out = {"steps_per_s": self.steps / dt, "tokens_per_s": self.tokens / dt}
        self.t, self.steps, self.tokens = now, 0, 0
        return out


def summarize(metrics_path: str, phase: str) -> dict:
    """Means over the last quarter of a phase's logged rows (the end-of-phase state)."""
    import json
    if not fs.exists(metrics_path):
        return {}
    rows = [json.loads(l) for l in fs.read_text(metrics_path).splitlines() if l.strip()]
    rows = [r for r in rows if r.get("phase") == phase]
    if not rows:
        return {}
    tail = rows[-max(1, len(rows) // 4):]
    out = {"steps": rows[-1]["step"]}
    for k in rows[-1]:
        if k in ("step", "phase", "time"):
            continue
        vals = [r[k] for r in tail if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])]
        if vals:
            out[k] = float(np.mean(vals))
    return out


class Timer:
    def __init__(self):
        self.t = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        dt, self.t = now - self.t, now
        return dt
