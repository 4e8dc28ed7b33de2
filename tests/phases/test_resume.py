"""A run killed with SIGKILL resumes from its last checkpoint when the same command is
rerun, and ends with exactly the parameters of an uninterrupted run. A run stopped with
SIGTERM (a preempted spot VM) saves the step it stopped at, exits 0, and resumes from
there to the same parameters."""

from __future__ import annotations

import os
import re
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
from tests.compile_flags import with_cheap_compile
from tests.conftest import ROOT


def command(phase, root, *extra):
    return [sys.executable, "tests/phases/run_phase.py", phase, str(root), *extra]


def subprocess_env() -> dict:
    """The tests' environment without the session's compilation cache: a run that read
    its programs from the cache would race to its end before the test can kill it.
    XLA compiles with its cheap settings (tests/compile_flags.py); every run of a
    comparison is compiled alike."""
    env = dict(os.environ, PYTHONPATH=str(ROOT),
               XLA_FLAGS=with_cheap_compile(os.environ.get("XLA_FLAGS")))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


def run(cmd, timeout=900):
    env = subprocess_env()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def final_params(run_dir):
    cfg = ModelConfig.from_hf_json(os.path.join(run_dir, "model", "config.json"))
    _, abstract, _ = split_params(abstract_model(cfg))
    params, meta = load_final(run_dir, abstract)
    return params, meta


def start_and_wait_for_checkpoint(cmd, run_dir, step, timeout=600):
    """Starts cmd; returns the process once checkpoint `step` exists."""
    env = subprocess_env()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    target = os.path.join(run_dir, "checkpoints", str(step))
    start = time.time()
    while not os.path.isdir(target):
        if proc.poll() is not None:
            pytest.fail(f"run ended before checkpoint {step}: {proc.stderr.read()[-3000:]}")
        if time.time() - start > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"no checkpoint {step} after {timeout} s")
        time.sleep(0.05)
    return proc


def kill_after_checkpoint(cmd, run_dir, step, timeout=600):
    """Starts cmd, waits until checkpoint `step` exists, then SIGKILLs it mid-run."""
    proc = start_and_wait_for_checkpoint(cmd, run_dir, step, timeout)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(run_dir, "final", "meta.json"))


# Each phase's run: the killed and the stopped run of a phase both end where its one
# uninterrupted run (`straight`, run once per phase for the module) ends.
RUNS = {"jsft": ["train.steps=44", "checkpoint.every_steps=8"],
        "self_judge": ["self_judge.steps=8", "checkpoint.every_steps=2", "model.source=tiny"]}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """phase -> (final params, meta) of its uninterrupted run, run on first use."""
    done = {}

    def get(phase):
        if phase not in done:
            root = tmp_path_factory.mktemp(f"straight_{phase}")
            run(command(phase, root, *RUNS[phase]))
            done[phase] = final_params(root / phase)
        return done[phase]
    return get


@pytest.mark.parametrize("phase,extra", RUNS.items())
def test_kill_and_resume_equals_uninterrupted(tmp_path, straight, phase, extra):
    killed_root = tmp_path / "killed"
    cmd = command(phase, killed_root, *extra)
    every = int(extra[1].split("=")[1])
    total = int(extra[0].split("=")[1])
    kill_after_checkpoint(cmd, killed_root / phase, every)
    run(cmd)  # the same command again: resumes from its last checkpoint
    a, meta_a = straight(phase)
    b, meta_b = final_params(killed_root / phase)
    assert meta_a["step"] == meta_b["step"] == total
    jax.tree.map(np.testing.assert_array_equal, a, b)
    # and the run really learned something: the weights moved from initialisation
    assert any(float(np.abs(np.asarray(x)).sum()) > 0 for x in jax.tree.leaves(a))


@pytest.mark.parametrize("phase,extra", RUNS.items())
def test_sigterm_saves_the_step_it_stopped_at_and_resumes(tmp_path, straight, phase, extra):
    total = int(extra[0].split("=")[1])
    every = int(extra[1].split("=")[1])
    stopped_root = tmp_path / "stopped"
    cmd = command(phase, stopped_root, *extra)
    run_dir = stopped_root / phase
    proc = start_and_wait_for_checkpoint(cmd, run_dir, every)
    sent = time.time()
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    took = time.time() - sent
    assert proc.returncode == 0, stderr[-3000:]
    assert took < 30, took
    match = re.search(r"SIGTERM: stopped \w+ after step (\d+) of (\d+); checkpoint saved in "
                      r"(\S+)/checkpoints/(\d+)\. Rerun the same command to resume\.", stderr)
    assert match, stderr[-3000:]
    stopped_at = int(match.group(1))
    assert every <= stopped_at < total and int(match.group(2)) == total
    saved = sorted(int(s) for s in os.listdir(run_dir / "checkpoints") if s.isdigit())
    assert saved[-1] == stopped_at  # the step it stopped at, multiple of every_steps or not
    assert not os.path.exists(run_dir / "final" / "meta.json")
    run(cmd)  # resumes from the saved step
    a, meta_a = straight(phase)
    b, meta_b = final_params(run_dir)
    assert meta_a["step"] == meta_b["step"] == total
    jax.tree.map(np.testing.assert_array_equal, a, b)
