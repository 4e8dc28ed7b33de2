"""A run killed with SIGKILL resumes from its last checkpoint when the same command is
rerun, and ends with exactly the parameters of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from sjjax.checkpoint import load_final
from sjjax.model.config import ModelConfig
from sjjax.model.transformer import abstract_model, split_params
from tests.conftest import ROOT


def command(phase, root, *extra):
    return [sys.executable, "tests/phases/run_phase.py", phase, str(root), *extra]


def run(cmd, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def final_params(run_dir):
    cfg = ModelConfig.from_hf_json(os.path.join(run_dir, "model", "config.json"))
    _, abstract, _ = split_params(abstract_model(cfg))
    params, meta = load_final(run_dir, abstract)
    return params, meta


def kill_after_checkpoint(cmd, run_dir, step, timeout=600):
    """Starts cmd, waits until checkpoint `step` exists, then SIGKILLs it mid-run."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    target = os.path.join(run_dir, "checkpoints", str(step))
    start = time.time()
    while not os.path.isdir(target):
        if proc.poll() is not None:
            pytest.fail(f"run ended before checkpoint {step}: {proc.stderr.read()[-3000:]}")
        if time.time() - start > timeout:
            proc.kill()
            pytest.fail(f"no checkpoint {step} after {timeout} s")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(run_dir, "final", "meta.json"))


@pytest.mark.parametrize("phase,extra", [
    ("jsft", ["train.steps=24", "checkpoint.every_steps=8"]),
    ("self_judge", ["self_judge.steps=6", "checkpoint.every_steps=2", "model.source=tiny"]),
])
def test_kill_and_resume_equals_uninterrupted(tmp_path, phase, extra):
    run(command(phase, tmp_path / "straight", *extra))
    killed_root = tmp_path / "killed"
    cmd = command(phase, killed_root, *extra)
    every = int(extra[1].split("=")[1])
    total = int(extra[0].split("=")[1])
    kill_after_checkpoint(cmd, killed_root / phase, every)
    run(cmd)  # the same command again: resumes from its last checkpoint
    a, meta_a = final_params(tmp_path / "straight" / phase)
    b, meta_b = final_params(killed_root / phase)
    assert meta_a["step"] == meta_b["step"] == total
    jax.tree.map(np.testing.assert_array_equal, a, b)
    # and the run really learned something: the weights moved from initialisation
    assert any(float(np.abs(np.asarray(x)).sum()) > 0 for x in jax.tree.leaves(a))
