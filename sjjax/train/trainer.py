"""The one training loop, used by SFT, JSFT, offline DPO and self-judge.

Read `train` top to bottom:

    open the run dir (config, model spec, mesh, checkpointer, metrics; find the resume step)
    weights: shard them on the mesh, attach LoRA adapters, keep a reference if needed
    state:   optimizer state and PRNG key, or the checkpointed state when resuming
    loop:    batch = task.batch(step)  ->  compile for its shape (once, ahead of time)
             -> step -> finite check -> log (mean of the window) -> checkpoint
    finish:  final parameters (LoRA merged) for the next phase, summary, HF export

What differs between phases is a `Task`: how it makes the batch of a step (from a data
stream; or by sampling the policy, judging the pairs and building DPO rows), its pure
step function, and its extra metrics. The loop itself never branches on the phase.

A killed run resumes from its last checkpoint when the same command is rerun: the state
(weights, optimizer, step, PRNG key) and the task's data position come back, so the
final parameters equal those of an uninterrupted run. SIGTERM or SIGINT stops it after
the step in flight with a checkpoint of that step (exit 0; rerun to resume). A
non-finite loss stops the run before anything is saved, keeping the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import signal
import time
from typing import Any, Callable, Protocol

import jax
import numpy as np

from sjjax import fs, sharding
from sjjax.checkpoint import (RunCheckpointer, abstract_like, check_resume, has_final,
                              save_final, save_model_spec)
from sjjax.config import save_resolved
from sjjax.errors import ConfigError, RunDirError
from sjjax.metrics import MetricsLogger, summary_line
from sjjax.train.memory import PeakMemory
from sjjax.train.optim import make_optimizer
from sjjax.train.placement import batch_to_device, init_state, jit_step, state_shardings
from sjjax.train.steps import TrainState
from sjjax.train.weights import Weights, prepare_weights

log = logging.getLogger("sjjax")


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


@dataclasses.dataclass
class StepBatch:
    """What a task hands the loop for one step.

    rows: host numpy arrays [A, b, ...] (A micro-batches of this host's b rows), or None
      when the step has nothing to learn from (the weights stay, the step advances);
    tokens: real (unpadded) tokens in the batch, for tokens/s;
    metrics: the task's own per-step metrics (e.g. sampling and judging statistics);
    whole: rows are the global batch, the same on every process (not this host's part).
    """
    rows: dict | None
    tokens: int = 0
    metrics: dict = dataclasses.field(default_factory=dict)
    whole: bool = False


class Task(Protocol):
    """A phase's part of training. `setup` runs once the weights are on the mesh."""
    name: str                  # the phase: metrics rows, checkpoint meta
    needs_reference: bool      # DPO-shaped steps keep a frozen reference
    progress_keys: tuple       # metrics shown in the progress bar

    def setup(self, weights: Weights) -> None: ...
    def make_step(self, weights: Weights, optimizer, schedule) -> Callable:
        """A pure (state, *step_args, batch) -> (state, metrics)."""
    def step_args(self, weights: Weights) -> tuple:
        """The weights the step reads but does not train: (frozen,) or (frozen, ref)."""
    def batch(self, step: int, state: TrainState) -> StepBatch: ...
    def data_state(self) -> dict | None:
        """The data position to checkpoint (None: batches are a pure function of step)."""
    def restore_data_state(self, data: dict) -> None: ...
    def summary(self) -> dict:
        """Extra end-of-phase figures for the summary."""


@dataclasses.dataclass
class RunContext:
    """The run directory's machinery, built once by `open_run`."""
    config: Any
    mesh: Any
    rules: Any
    checkpointer: RunCheckpointer
    metrics: MetricsLogger
    start_step: int


def open_run(config, model_config, tokenizer, total_steps: int) -> RunContext:
    """Creates run_dir (config, model spec), the mesh, the checkpointer and the logger,
    and finds the step to resume from.

    A run dir that already holds checkpoints or a final/ is resumed only under a config
    that trains the same model on the same data: `checkpoint.check_resume` compares the
    saved config.json with this one before anything is overwritten, refusing a change of
    the model or data (RunDirError, naming the keys) and logging a warning line for each
    other change, which applies from the resume step (docs/reliability.md)."""
    run_dir = config.run_dir
    try:
        fs.makedirs(run_dir)
        checkpointer = RunCheckpointer(run_dir, keep=config.checkpoint.keep,
                                       every_steps=config.checkpoint.every_steps)
    except OSError as err:
        raise RunDirError(f"config.run_dir: cannot create {run_dir} ({err.strerror or err}); "
                          f"choose a directory this user can write") from None
    start = checkpointer.latest_step() or 0
    finished = has_final(run_dir)
    if start or finished:
        for line in check_resume(run_dir, config, model_config, start, total_steps, finished):
            log.warning("%s", line)
    try:
        mesh = sharding.make_mesh(tuple(config.mesh.shape), tuple(config.mesh.axes))
    except ValueError as err:  # e.g. more devices than there are
        raise ConfigError(f"config.mesh.shape: {err}") from None
    rules = sharding.normalize_rules(config.mesh.rules)
    if not start:  # a resumed run's files are rewritten once its checkpoint restored
        write_run_files(config, model_config, tokenizer)
    metrics = MetricsLogger(run_dir, config.phase, config.log.tensorboard,
                            resume_step=start if start else None)
    if finished and start >= total_steps:
        log.info("%s is finished (step %d of %d): nothing left to train; final/ is written "
                 "again from the last checkpoint", run_dir, start, total_steps)
    elif start:
        log.info("resuming %s from step %d of %d", run_dir, start, total_steps)
    return RunContext(config, mesh, rules, checkpointer, metrics, start)


def write_run_files(config, model_config, tokenizer) -> None:
    """run_dir/config.json (this config) and run_dir/model (architecture, tokenizer),
    written by process 0 alone on a multi-process run."""
    if jax.process_index() != 0:
        return
    try:
        save_resolved(config, config.run_dir)
        save_model_spec(config.run_dir, model_config, tokenizer)
    except OSError as err:
        raise RunDirError(f"config.run_dir: cannot write to {config.run_dir} "
                          f"({err.strerror or err}); choose a directory this user can "
                          f"write") from None


def train(config, policy, task: Task, total_steps: int, memory: PeakMemory) -> dict:
    """Runs `task` for `total_steps` optimizer steps on `policy` (a `phases.common.Policy`);
    returns the summary. `memory` was created before the weights were loaded."""
    # ------------------------------------------------------------ run dir, mesh
    ctx = open_run(config, policy.model_config, policy.tokenizer, total_steps)
    # ------------------------------------------------------------ weights, state
    weights = prepare_weights(policy, config, ctx.mesh, ctx.rules, task.needs_reference)
    task.setup(weights)
    optimizer, schedule = make_optimizer(config.train, total_steps)
    state = init_state(weights.trainable, optimizer, config.seed, ctx.mesh)
    if ctx.start_step:
        abstract = abstract_like(state, state_shardings(state, ctx.mesh))
        # Read into this mesh's shardings: a checkpoint saved on another mesh fits; one
        # of another model fails here with a RunDirError naming the parameter.
        restored, meta = ctx.checkpointer.restore(ctx.start_step, abstract)
        state = TrainState(*restored)
        if meta.get("data"):
            task.restore_data_state(meta["data"])
        write_run_files(config, policy.model_config, policy.tokenizer)  # the config now
    step = CompiledSteps(task.make_step(weights, optimizer, schedule), task.step_args(weights),
                         ctx.mesh, ctx.rules, memory)

    # ------------------------------------------------------------ the loop
    progress = Progress(total_steps, ctx.start_step, task.name,
                        config.log.progress and jax.process_index() == 0)
    stop = StopRequest()
    window = MetricWindow()
    last_saved = ctx.start_step or None
    try:
        for i in range(ctx.start_step, total_steps):
            done = i + 1  # steps finished after this one: the step number logged and saved
            started = time.perf_counter()
            made = task.batch(i, state)
            t_batch = time.perf_counter() - started
            if made.rows is None:  # nothing to learn from: keep the weights, advance the step
                state = state._replace(step=state.step + 1)
                metrics = {"loss": float("nan"), "pairs": 0.0}
            else:
                state, metrics = step(state, made)
                check_finite(metrics, done, config.run_dir, last_saved)
            metrics.update(made.metrics)
            metrics["time/batch_s"] = t_batch
            metrics["time/update_s"] = (time.perf_counter() - started - t_batch
                                        - made.metrics.get("time/compile_s", 0.0))
            window.add(metrics, tokens=made.tokens)
            progress.update({k: metrics.get(k, float("nan")) for k in task.progress_keys})
            stopping = stop.requested() and done < total_steps
            if done % config.log.every_steps == 0 or done == total_steps or stopping:
                ctx.metrics.log(done, window.pop())
            if ctx.checkpointer.should_save(done) or done == total_steps or stopping:
                ctx.checkpointer.save(done, state, {"phase": task.name,
                                                    "data": task.data_state()})
                last_saved = done
            if stopping:
                ctx.metrics.close()
                ctx.checkpointer.close()
                raise Preempted(f"{stop.received}: stopped {task.name} after step {done} of "
                                f"{total_steps}; checkpoint saved in {config.run_dir}/"
                                f"checkpoints/{done}. Rerun the same command to resume.")
    finally:
        progress.close()
        stop.release()

    # ------------------------------------------------------------ finish
    final = weights.final(state.trainable)
    summary = summarize(ctx.metrics.path, task.name)
    summary.update(task.summary())
    # The longest padded batch this run compiled for: where its peak memory was reached.
    summary["max_batch_length"] = step.max_length
    summary.update(memory.summary())
    save_final(config.run_dir, final, {"step": int(total_steps), "phase": config.phase,
                                       "summary": summary})
    ctx.metrics.close()
    ctx.checkpointer.close()
    export_if_asked(config, policy.model_config, final, policy.tokenizer)
    if jax.process_index() == 0:  # (one summary line for the run)
        print(summary_line(task.name, summary, ["steps", "loss", "sft_loss", "judge_loss",
                                                "judge_accuracy", "oracle/sample_accuracy",
                                                "oracle/judge_agreement", "tokens_per_s"]),
              flush=True)
    return summary


class CompiledSteps:
    """The step function compiled once per batch shape (a length bucket), ahead of time,
    with the state donated; compile time and memory are kept out of the step's figures."""

    def __init__(self, step_fn, step_args: tuple, mesh, rules, memory: PeakMemory):
        self.step_fn, self.step_args, self.mesh, self.rules = step_fn, step_args, mesh, rules
        self.memory = memory
        self.compiled = {}  # ((name, shape), ...) -> compiled step

    @property
    def max_length(self) -> int:
        """The longest padded batch compiled for (where the run's peak memory was)."""
        return max((dict(s)["tokens"][-1] for s in self.compiled), default=0)

    def __call__(self, state: TrainState, made: StepBatch) -> tuple[TrainState, dict]:
        rows = batch_to_device(made.rows, self.mesh, self.rules, whole=made.whole)
        shapes = tuple((k, v.shape) for k, v in sorted(rows.items()))
        if shapes not in self.compiled:
            started = time.perf_counter()
            with self.memory.excluded():  # XLA's compiler memory is host work, not the step's
                jitted = jit_step(self.step_fn, state, self.step_args, rows, self.mesh)
                self.compiled[shapes] = jitted.lower(state, *self.step_args, rows).compile()
            self.memory.add_compiled(self.compiled[shapes])
            made.metrics["time/compile_s"] = time.perf_counter() - started
        state, metrics = self.compiled[shapes](state, *self.step_args, rows)
        return state, {k: float(v) for k, v in jax.device_get(metrics).items()}


def export_if_asked(config, model_config, params, tokenizer) -> str | None:
    """config.checkpoint.export_hf: also write run_dir/hf (safetensors + tokenizer)."""
    if not config.checkpoint.get("export_hf"):
        return None
    import os

    from sjjax.model.hf_io import save_hf_dir
    path = os.path.join(config.run_dir, "hf")
    if jax.process_count() > 1:  # every process holds only its shards: gather them all
        from jax.experimental import multihost_utils
        params = multihost_utils.process_allgather(params, tiled=True)
        if jax.process_index() != 0:
            return path
    save_hf_dir(path, model_config, jax.device_get(params), tokenizer)
    return path


def check_finite(metrics: dict, step: int, run_dir: str, last_saved: int | None):
    """Stops the run when the loss, or the gradient that just updated the weights, is
    NaN or inf: the weights after such a step are not worth saving."""
    for key in ("loss", "grad_norm"):
        value = float(metrics.get(key, 0.0))
        if not math.isfinite(value):
            kept = f"step {last_saved}" if last_saved else "no checkpoint yet"
            raise NonFiniteLossError(
                f"{key} is {value} at step {step}; stopping. The last good checkpoint in "
                f"{run_dir}/checkpoints is kept ({kept}). Lower train.learning_rate or "
                f"check the data.")


class Preempted(Exception):
    """The run was asked to stop (SIGTERM, SIGINT) and saved a checkpoint of its last
    step; `sjjax.main` prints the message and exits 0."""


class StopRequest:
    """SIGTERM (a preempted spot TPU VM) or SIGINT (Ctrl-C) asks the loop to stop after
    the step in flight; the loop then saves a checkpoint of that step and raises
    `Preempted`. On a multi-process run every process must stop at the same step (they
    save one checkpoint together), so the processes agree each step: a tiny all-gather
    of the flag, negligible beside a training step."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: str | None = None
        self._previous = {}
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals cannot be caught here
                pass

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def requested(self) -> bool:
        flag = self.received is not None
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            flags = multihost_utils.process_allgather(np.int32(flag))
            if flags.any() and not flag:
                self.received = "a stop request on another process"
            flag = bool(flags.any())
        return flag

    def release(self) -> None:
        """Reinstates the handlers that were there before."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


class MetricWindow:
    """The steps since the last logged row: a row is the mean of each metric over them
    (finite values only; a loss that is NaN on every step stays NaN), plus steps/s and
    tokens/s over the window."""

    def __init__(self):
        self._rows, self._tokens, self._t = [], 0, time.perf_counter()

    def add(self, metrics: dict, tokens: int = 0):
        self._rows.append(metrics)
        self._tokens += tokens

    def pop(self) -> dict:
        out = {}
        for key in dict.fromkeys(k for r in self._rows for k in r):
            vals = [r[key] for r in self._rows if key in r]
            finite = [v for v in vals if math.isfinite(v)]
            out[key] = float(np.mean(finite)) if finite else float("nan")
        dt = max(time.perf_counter() - self._t, 1e-9)
        out["steps_per_s"] = len(self._rows) / dt
        out["tokens_per_s"] = self._tokens / dt
        self.__init__()
        return out


class Progress:
    """tqdm bar (or nothing) with a few metrics in the postfix."""

    def __init__(self, total: int, start: int, phase: str, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=start, desc=phase, dynamic_ncols=True)

    def update(self, postfix: dict):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k.split("/")[-1]: (f"{v:.4g}" if isinstance(v, float) else v)
                                  for k, v in postfix.items()}, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def summarize(metrics_path: str, phase: str) -> dict:
    """Means over the last quarter of a phase's logged rows (the end-of-phase state)."""
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
