"""Supervised phases on a fixed data set: JSFT, the SFT baseline and offline DPO.

    jsft  masked cross-entropy on SFT conversations + pairwise judgments (both orders)
    sft   the same conversations without judgments (baseline)
    dpo   DPO on the labelled pairs of the same sources (offline baseline)

Each is a `SupervisedTask` for the one training loop (`sjjax.train.trainer`): its
batches come from the resumable data stream, its step is the masked cross-entropy or
the DPO step.
"""

from __future__ import annotations

import json
import os

import numpy as np

from sjjax.config import ConfigError
from sjjax.data import datasets
from sjjax.phases.common import load_policy
from sjjax.phases.self_samples import add_self_sample_pairs
from sjjax.train import trainer
from sjjax.train.memory import PeakMemory
from sjjax.train.steps import LossSpec, make_dpo_step, make_sft_step


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


# A debugging aid (used by tests/phases/test_multiprocess.py): with SJJAX_EXAMPLE_LOG=PATH
# every process appends {"step", "process", "index": the example indices of its rows,
# -1 = padding} per step to PATH.p<process index>, to see which process used what.
EXAMPLE_LOG = "SJJAX_EXAMPLE_LOG"


def log_examples(path: str, step: int, index) -> None:
    import jax
    process = jax.process_index()
    with open(f"{path}.p{process}", "a") as f:
        f.write(json.dumps({"step": int(step), "process": process,
                            "index": [int(i) for i in index]}) + "\n")


class SupervisedTask:
    """Batches from the data stream; the SFT/JSFT cross-entropy step or the DPO step.

    Multi-process: for SFT/JSFT each process's stream yields its slice of the global
    batch. For DPO every process reads the whole global batch of pairs (`run`) and hands
    it to the loop as such (`StepBatch.whole`): the step pairs row i of a micro-batch's
    first half (chosen) with row i of its second half (rejected) of the *global* batch,
    whose halves no process's own slice of pairs could lay out (with 2 processes on
    mesh (8,1,1), process 0's devices hold every chosen row, process 1's every rejected
    row). DPO batches are small; reading them whole costs little."""
    progress_keys = ("loss",)

    def __init__(self, config, prepared, stream):
        self.name = config.phase
        self.pairs = config.phase == "dpo"
        self.needs_reference = self.pairs
        self.config, self.prepared, self.stream = config, prepared, stream

    def setup(self, weights) -> None:
        pass

    def make_step(self, weights, optimizer, schedule):
        spec = LossSpec.from_config(self.config, weights.use_lora)
        builder = make_dpo_step if self.pairs else make_sft_step
        return builder(weights.graphdef, optimizer, spec, schedule)

    def step_args(self, weights) -> tuple:
        return (weights.frozen, weights.ref) if self.pairs else (weights.frozen,)

    def batch(self, step, state) -> trainer.StepBatch:
        batch = next(self.stream)
        if EXAMPLE_LOG in os.environ:
            log_examples(os.environ[EXAMPLE_LOG], step, batch["index"])
        rows = micro_batches(batch, self.config.train.grad_accum, self.pairs)
        return trainer.StepBatch(rows, tokens=int(rows["mask"].sum()), whole=self.pairs)

    def data_state(self) -> dict:
        return self.stream.get_state()

    def restore_data_state(self, data: dict) -> None:
        self.stream.set_state(data)

    def summary(self) -> dict:
        return {"examples": len(self.prepared),
                "example_stats": self.prepared.stats.get("examples", {})}


def prepare_once(config, tokenizer) -> datasets.Prepared:
    """The prepared dataset; on a multi-process run process 0 builds it while the others
    wait, then they load it (with a host-local config.data.tfds_dir each builds its own
    copy after the wait): TFDS builders writing one directory at once would collide."""
    from sjjax import distributed
    if not distributed.is_primary():
        distributed.barrier("sjjax: data prepared")
    prepared = datasets.prepare(config, tokenizer, config.phase)
    if distributed.is_primary():
        distributed.barrier("sjjax: data prepared")
    return prepared


def run(config):
    memory = PeakMemory()  # before any weights are loaded
    if config.phase == "jsft":
        add_self_sample_pairs(config)  # optional: judge data from a model's own samples
    policy = load_policy(config)
    tok = policy.tokenizer
    prepared = prepare_once(config, tok)
    # DPO: every process reads the global batch (SupervisedTask's docstring says why)
    whole = dict(process_index=0, process_count=1) if config.phase == "dpo" else {}
    stream = datasets.make_stream(config, prepared, tok.pad_token_id, **whole)
    total = int(config.train.steps or stream.total_steps or 0)
    if total <= 0:
        raise ConfigError("config.train.steps: 0 and the data stream is endless "
                          "(config.data.num_epochs=None): set one of them")
    if stream.total_steps is not None and total > stream.total_steps:
        raise ConfigError(f"config.train.steps: {total} is more than the "
                          f"{stream.total_steps} batches of config.data.num_epochs="
                          f"{config.data.num_epochs}; raise data.num_epochs (None: endless) or "
                          f"lower train.steps")
    return trainer.train(config, policy, SupervisedTask(config, prepared, stream), total,
                         memory)
