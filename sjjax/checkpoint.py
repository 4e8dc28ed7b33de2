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
from sjjax.errors import RunDirError
from sjjax.model.config import ModelConfig


def _abspath(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


class RunCheckpointer:
    """Saves and restores the resumable state of one phase."""

    def __init__(self, run_dir: str, *, keep: int = 2, every_steps: int = 0):
        self.run_dir = run_dir
        self.every_steps = every_steps
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=False)
        # Handlers named up front: the stored metadata can be read before any restore.
        self.manager = ocp.CheckpointManager(
            _abspath(fs.join(run_dir, "checkpoints")), options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()})

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def should_save(self, step: int) -> bool:
        return bool(self.every_steps) and step % self.every_steps == 0

    def save(self, step: int, state: Any, meta: dict) -> None:
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """abstract_state: a pytree of ShapeDtypeStructs (with shardings) like the state;
        the arrays are read straight into those shardings, so a checkpoint saved on one
        mesh restores onto another. A checkpoint of another model (other shapes or
        parameters) raises RunDirError naming the run dir and the first difference."""
        self.check_compatible(step, abstract_state)
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return out.state, out.meta

    def check_compatible(self, step: int, abstract_state: Any) -> None:
        """Compares the stored arrays' shapes with those the current config builds
        (before reading any data: Orbax's own error names neither the run dir nor the
        parameter, and leaves noise on stderr)."""
        try:
            stored = self.manager.item_metadata(step)["state"]
        except Exception:  # no readable metadata: let the restore itself report
            return

        def by_path(tree):  # Orbax stores namedtuples as dicts: compare by field names
            return {"/".join(_key_name(k) for k in path): leaf
                    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

        stored = by_path(getattr(stored, "tree", stored))
        wanted = by_path(abstract_state)
        if not stored:
            return
        where = fs.join(self.run_dir, "checkpoints", str(step))
        advice = (f"resume with the config of the run that wrote it (see "
                  f"{fs.join(self.run_dir, 'config.json')}), or start a new run: use another "
                  f"config.run_dir or delete {self.run_dir}")
        missing, extra = sorted(set(wanted) - set(stored)), sorted(set(stored) - set(wanted))
        if missing or extra:
            names = ", ".join((missing or extra)[:3])
            raise RunDirError(
                f"config.run_dir: {where} was saved by another model or LoRA setting "
                f"(config.model.*, config.lora.*): {len(missing)} arrays of this config are "
                f"not in it and {len(extra)} of it are not in this config (e.g. {names}); "
                f"{advice}")
        for name, want in wanted.items():
            have = getattr(stored[name], "shape", None)
            if have is not None and tuple(have) != tuple(want.shape):
                raise RunDirError(
                    f"config.run_dir: {where} was saved by another model: {name} has shape "
                    f"{tuple(have)} there but {tuple(want.shape)} under this config "
                    f"(config.model.*, e.g. model.tiny.hidden_size); {advice}")

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


class FinalMissingError(RunDirError, FileNotFoundError):
    """A run directory whose phase has not finished (no final/meta.json)."""


def has_final(run_dir: str) -> bool:
    return fs.exists(fs.join(run_dir, "final", "meta.json"))


def save_final(run_dir: str, params: Any, meta: dict) -> None:
    """Full parameters for the next phase (meta.json is written last: its presence
    marks a complete final checkpoint). On a multi-process run every process takes part
    in the Orbax save (each writes its shards) and process 0 alone writes meta.json."""
    path = _abspath(fs.join(run_dir, "final"))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(fs.join(path, "params"), params, force=True)
    checkpointer.wait_until_finished()
    if jax.process_index() == 0:
        fs.write_text(fs.join(path, "meta.json"), json.dumps(meta, indent=2))


def load_final(run_dir: str, abstract_params: Any) -> tuple[Any, dict]:
    path = _abspath(fs.join(run_dir, "final"))
    if not has_final(run_dir):
        raise FinalMissingError(
            f"{run_dir}: no final checkpoint (final/meta.json): the phase that writes it has "
            f"not finished; rerun that phase's command to finish it, or point "
            f"config.model.source at a finished run")
    try:  # onto the shardings it was saved with (the same devices: a pod's next phase)
        params = ocp.StandardCheckpointer().restore(fs.join(path, "params"), abstract_params)
    except ValueError as err:  # Orbax's words for "saved on other devices"
        if not any(w in str(err).lower() for w in ("topology", "devices used to save")):
            raise
        # Saved on other devices (e.g. by 2 processes, read by 1): whole arrays onto this
        # process's first device; the phase then shards them on its own mesh.
        local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        params = ocp.StandardCheckpointer().restore(
            fs.join(path, "params"), jax.tree.map(
                lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=local),
                abstract_params))
    return params, json.loads(fs.read_text(fs.join(path, "meta.json")))


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def is_run_dir(path: str) -> bool:
    return fs.exists(fs.join(path, "model", "config.json"))


def abstract_like(tree: Any, shardings: Any = None) -> Any:
    """ShapeDtypeStructs of a tree (with shardings if given) for restoring."""
    if shardings is None:
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s),
                        tree, shardings)


# --------------------------------------------------------------------------
# Config drift: rerunning a run directory with another config
# --------------------------------------------------------------------------

# What a resumed run may not change: the model and what it is trained on (the saved
# state belongs to them). A key here is refused with everything under it, except the
# keys of DRIFT_APPLIED, which change how the run computes or reads, not what.
DRIFT_REFUSED = ("phase", "seed", "model", "lora", "data", "judge.tokens",
                 "judge.templates", "judge.principles", "self_samples")
DRIFT_APPLIED = ("model.dtype", "model.remat", "model.attention", "data.tfds_dir", "data.num_threads",
                 "data.prefetch",
                 "data.num_epochs")  # more passes: each epoch's order does not depend on it
DRIFT_IGNORED = ("run_dir",)  # the same directory, perhaps spelt another way


def _flatten(tree: Any, prefix: str = "") -> dict:
    """{"train.learning_rate": 0.001, ...}: the leaves of a JSON config."""
    if isinstance(tree, dict) and tree:
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _under(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_ABSENT = object()


def config_drift(saved: dict, current: dict) -> tuple[list, list]:
    """-> (refused, applied): lists of (key, saved value, current value) between two
    resolved configs (JSON dicts), by the rules of DRIFT_REFUSED / DRIFT_APPLIED."""
    a, b = _flatten(saved), _flatten(current)
    refused, applied = [], []
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key, _ABSENT), b.get(key, _ABSENT)
        if old == new or _under(key, DRIFT_IGNORED):
            continue
        change = (key, old, new)
        if _under(key, DRIFT_REFUSED) and not _under(key, DRIFT_APPLIED):
            refused.append(change)
        else:
            applied.append(change)
    return refused, applied


def _describe(changes, limit: int = 8) -> str:
    def value(v):
        return "(absent)" if v is _ABSENT else _short(v)
    shown = [f"{k}: {value(old)} -> {value(new)}" for k, old, new in changes[:limit]]
    more = f" and {len(changes) - limit} more" if len(changes) > limit else ""
    return "; ".join(shown) + more


def check_resume(run_dir: str, config, model_config: ModelConfig, start_step: int,
                 total_steps: int, finished: bool) -> list[str]:
    """Compares the config of the run that wrote `run_dir` (its config.json, and the
    architecture in model/config.json) with this one, before anything is written.

    A change of the model or the data raises RunDirError listing the keys (saved ->
    now) and what to do; other changes come back as one warning line per key: they are
    applied from `start_step` on (docs/reliability.md)."""
    saved_path = fs.join(run_dir, "config.json")
    advice = (f"Use a new config.run_dir, or delete {run_dir} to start over (rerun with the "
              f"saved values to resume it)")
    refused, applied = [], []
    if fs.exists(saved_path):
        try:
            saved = json.loads(fs.read_text(saved_path))
        except json.JSONDecodeError:
            saved = None
        if isinstance(saved, dict):
            current = json.loads(config.to_json_best_effort(sort_keys=True))
            refused, applied = config_drift(saved, current)
    spec_path = fs.join(run_dir, "model", "config.json")
    if not refused and fs.exists(spec_path):
        try:
            spec = json.loads(fs.read_text(spec_path))
        except json.JSONDecodeError:
            spec = None
        if isinstance(spec, dict):
            now = json.loads(json.dumps(model_config.to_hf_dict()))
            arch = [(f"model/config.json:{k}", spec.get(k, _ABSENT), now.get(k, _ABSENT))
                    for k in sorted(set(spec) | set(now))
                    if k != "torch_dtype" and spec.get(k, _ABSENT) != now.get(k, _ABSENT)]
            refused += arch
    state = "a finished run" if finished else f"a run at step {start_step}"
    if refused:
        raise RunDirError(
            f"config.run_dir: {run_dir} holds {state} of another model or data; changed: "
            f"{_describe(refused)}. {advice}")
    if start_step > total_steps:
        raise RunDirError(
            f"config.run_dir: {run_dir} holds {state} that reached step {start_step}, "
            f"beyond the {total_steps} steps of this config (train.steps / "
            f"self_judge.steps). Raise the steps to at least {start_step}, or use a new "
            f"config.run_dir")
    return [f"config changed since {run_dir} was saved (step {start_step}): {key}: "
            f"{'(absent)' if old is _ABSENT else _short(old)} -> "
            f"{'(absent)' if new is _ABSENT else _short(new)}; applied from step {start_step}"
            for key, old, new in applied]
