"""Orbax checkpoints of a run, and the run directory layout phases hand to each other.

    run_dir/
      config.json            the resolved config of the phase
      model/                 architecture (HF-style config.json) + tokenizer files
      checkpoints/<step>/    resumable training state (every K steps and at the end):
                             trainable params, optimizer state, step, PRNG key, and
                             JSON meta (data stream position, metrics so far)
      final/                 full parameters (LoRA merged) for the next phase
      metrics.jsonl, tb/     logs

Writes are atomic (Orbax finalises a step directory by renaming it), so a run
killed mid-save resumes from the previous complete checkpoint. `run_dir` may be a
gs:// path on TPU VMs.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from sjjax import fs
from sjjax.model.config import ModelConfig


def _abspath(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


class RunCheckpointer:
    """Saves and restores the resumable state of one phase."""

    def __init__(self, run_dir: str, *, keep: int = 2, every_steps: int = 0):
        self.every_steps = every_steps
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(_abspath(fs.join(run_dir, "checkpoints")),
                                             options=options,
                                             item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def should_save(self, step: int) -> bool:
        return bool(self.every_steps) and step % self.every_steps == 0

    def save(self, step: int, state: Any, meta: dict) -> None:
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """abstract_state: a pytree of ShapeDtypeStructs (with shardings) like the state."""
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return out.state, out.meta

    def close(self):
        self.manager.close()


# --------------------------------------------------------------------------
# Model spec (architecture + tokenizer) and final parameters
# --------------------------------------------------------------------------

def save_model_spec(run_dir: str, cfg: ModelConfig, tokenizer) -> None:
    """run_dir/model: the architecture as a HF config.json, and the tokenizer files."""
    directory = fs.join(run_dir, "model")
    with tempfile.TemporaryDirectory() as local:
        with open(os.path.join(local, "config.json"), "w") as f:
            json.dump(cfg.to_hf_dict(), f, indent=2)
        tokenizer.save_pretrained(local)
        fs.makedirs(directory)
        fs.save_dir(local, directory)


def has_final(run_dir: str) -> bool:
    return fs.exists(fs.join(run_dir, "final", "meta.json"))


def save_final(run_dir: str, params: Any, meta: dict) -> None:
    """Full parameters for the next phase (meta.json is written last: its presence
    marks a complete final checkpoint)."""
    path = _abspath(fs.join(run_dir, "final"))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(fs.join(path, "params"), params, force=True)
    checkpointer.wait_until_finished()
    fs.write_text(fs.join(path, "meta.json"), json.dumps(meta, indent=2))


def load_final(run_dir: str, abstract_params: Any) -> tuple[Any, dict]:
    path = _abspath(fs.join(run_dir, "final"))
    if not has_final(run_dir):
        raise FileNotFoundError(
            f"{run_dir}: no final checkpoint (final/meta.json); the phase that writes it has "
            f"not finished - rerun its command to resume it")
    params = ocp.StandardCheckpointer().restore(fs.join(path, "params"), abstract_params)
    return params, json.loads(fs.read_text(fs.join(path, "meta.json")))


def is_run_dir(path: str) -> bool:
    return fs.exists(fs.join(path, "model", "config.json"))


def abstract_like(tree: Any, shardings: Any = None) -> Any:
    """ShapeDtypeStructs of a tree (with shardings if given) for restoring."""
    if shardings is None:
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s),
                        tree, shardings)
