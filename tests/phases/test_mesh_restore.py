"""A checkpoint saved under one mesh restores under another: a tiny JSFT run saved on a
(data=8, fsdp=1, tensor=1) mesh of 8 simulated CPU devices resumes on (2, 4, 1) and
(1, 8, 1).

What is compared, and why:
- the restored state (weights, Adam moments, step, PRNG key) against the state the first
  run saved at that step: bitwise equal, and laid out on the new mesh. This is what a
  restore must guarantee; Orbax reads each shard of the new layout from the stored arrays.
- the resumed run's final parameters against an uninterrupted run on the first mesh:
  the continuation computes on another layout (fsdp shards the contractions of the
  matmuls, so their partial sums are added in another order), so the last steps may
  differ in float rounding. The difference is measured, printed, and bounded (1e-5);
  a resume on the *same* mesh is bitwise equal (asserted here too, and for SIGKILL and
  SIGTERM in test_resume.py).

The work runs in a child interpreter that sees 8 CPU devices (this file, as a script)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.compile_flags import with_cheap_compile
from tests.conftest import ROOT

SAVED_ON = (8, 1, 1)
RESUMED_ON = ((2, 4, 1), (1, 8, 1))
STEPS, CUT = 6, 3            # the first run saves step 3 (and 6); resumes start from 3
FINAL_TOLERANCE = 1e-5       # max |difference| of the final parameters across meshes


@pytest.mark.slow  # four tiny JSFT runs on 8 simulated devices: ~2 min on 2 cores
def test_checkpoint_restores_onto_another_mesh(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
               XLA_FLAGS=with_cheap_compile("--xla_force_host_platform_device_count=8"))
    proc = subprocess.run([sys.executable, "tests/phases/test_mesh_restore.py", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "OK" in proc.stdout, proc.stdout
    print(proc.stdout)


# --------------------------------------------------------------------------------------
# The child (8 devices)
# --------------------------------------------------------------------------------------

def _child(root: str) -> None:
    import shutil

    import jax
    import numpy as np

    from sjjax import checkpoint
    from sjjax.phases import run_phase
    from tests.phases.test_resume import final_params
    from tests.phases.tiny_config import small

    assert jax.device_count() == 8
    saved, restored = {}, {}
    real_save, real_restore = checkpoint.RunCheckpointer.save, checkpoint.RunCheckpointer.restore

    def spy_save(self, step, state, meta):  # the state exactly as saved, on the host
        saved[step] = jax.device_get(state)
        return real_save(self, step, state, meta)

    def spy_restore(self, step, abstract):  # what the resumed run got, and its layout
        out = real_restore(self, step, abstract)
        # (copied now: the loop donates the state to its first step)
        restored["host"] = jax.device_get(out[0])
        restored["shardings"] = [x.sharding for x in jax.tree.leaves(out[0])]
        return out

    checkpoint.RunCheckpointer.save = spy_save
    checkpoint.RunCheckpointer.restore = spy_restore

    def config(name, shape):
        return small("jsft", root, **{"run_dir": f"{root}/{name}", "mesh.shape": shape,
                                      "train.steps": STEPS, "checkpoint.every_steps": CUT,
                                      "checkpoint.keep": 5, "log.every_steps": 1})

    # The uninterrupted run on the first mesh; it also saves step CUT.
    first = config("first", SAVED_ON)
    run_phase(first)
    reference, _ = final_params(first.run_dir)
    at_cut = saved[CUT]

    def interrupted_copy(name):
        """The first run as if it had stopped right after saving step CUT."""
        target = f"{root}/{name}"
        shutil.copytree(first.run_dir, target)
        shutil.rmtree(f"{target}/final")
        for step in os.listdir(f"{target}/checkpoints"):
            if step.isdigit() and int(step) > CUT:
                shutil.rmtree(f"{target}/checkpoints/{step}")
        return target

    for shape in (SAVED_ON, *RESUMED_ON):
        name = "resumed_" + "x".join(map(str, shape))
        interrupted_copy(name)
        restored.clear()
        run_phase(config(name, shape))
        host, shardings = restored["host"], restored["shardings"]
        # 1. the restored state is the saved one, bit for bit, on the new mesh
        assert jax.tree.structure(host) == jax.tree.structure(at_cut)
        jax.tree.map(np.testing.assert_array_equal, host, at_cut)
        meshes = {tuple(s.mesh.devices.shape) for s in shardings}
        assert meshes == {shape}, (shape, meshes)
        sharded = sum(any(p is not None for p in s.spec) for s in shardings)
        # 2. the resumed run finished; its final parameters against the uninterrupted run
        final, meta = final_params(f"{root}/{name}")
        assert meta["step"] == STEPS
        diffs = jax.tree.leaves(jax.tree.map(
            lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64)
                                             - np.asarray(b, np.float64)), initial=0.0)),
            final, reference))
        scale = max(float(np.max(np.abs(np.asarray(x)), initial=0.0))
                    for x in jax.tree.leaves(reference))
        equal = all(np.array_equal(a, b) for a, b in
                    zip(jax.tree.leaves(final), jax.tree.leaves(reference)))
        unequal = sum(d > 0 for d in diffs)
        print(f"saved on {SAVED_ON}, resumed at step {CUT} on {shape}: restored state "
              f"bitwise equal ({len(shardings)} arrays, {sharded} sharded); "
              f"final params after {STEPS} steps vs uninterrupted on {SAVED_ON}: "
              f"max |diff| {max(diffs):.3g} (largest |param| {scale:.3g}), "
              f"{unequal}/{len(diffs)} arrays differ, bitwise equal: {equal}", flush=True)
        if shape == SAVED_ON:
            assert equal, "a resume on the same mesh must be bitwise equal"
        assert max(diffs) <= FINAL_TOLERANCE, (shape, max(diffs))
    print("OK")


if __name__ == "__main__":
    _child(sys.argv[1])
