"""The pod path on one machine: sjjax as 2 cooperating JAX processes x 4 simulated CPU
devices (gloo collectives, a loopback coordinator) against single-process runs on 8
devices, with the processes started as `sjjax.launch_local` starts them.

Shown here (docs/multiprocess.md has the figures):
- JSFT (JSFT_STEPS steps) and self-judge (SJ_STEPS steps) on meshes (8,1,1) and
  (2,4,1), and offline DPO (DPO_STEPS steps) on (8,1,1), end with the parameters of the
  single-process run on the same mesh within TOLERANCE: not bitwise, because the
  gradient all-reduce across processes goes through gloo, whose summation order differs
  from XLA:CPU's in-process all-reduce in the last bit (measured: ~1e-7);
- each JSFT example is used exactly once per epoch across the two processes, and the two
  processes' rows of a step are the two halves of the single-process batch (example ids);
  for DPO every process holds the whole global batch of pairs, the single-process one;
- a checkpoint written by 2 processes resumes in 1 process (8 devices) and vice versa;
- `python -m sjjax.main` as 2 processes (the command tpu_scripts/launch.sh starts on each
  pod host): SIGKILL of process 1 ends process 0 within KILL_EXIT_BOUND s with a line
  naming process 1 (exit status 3), and rerunning resumes from the last checkpoint.

The runs are shared between assertions (the module-scoped `runs` fixture; the
uninterrupted ones run all in one process, then all in one pair of processes:
tests/phases/multiprocess_runs.py); a compilation cache is shared by the module's runs,
XLA compiles with its cheap settings (tests/compile_flags.py), and process 0 compiles for
both processes (multiprocess_runs.py). Loopback only, free ports;
every process started is killed at the end.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import pytest

from sjjax import launch_local
from tests.compile_flags import with_cheap_compile
from tests.conftest import ROOT
from tests.phases.test_resume import final_params

JSFT_STEPS, SJ_STEPS, DPO_STEPS = 20, 4, 4
STEPS = {"jsft": JSFT_STEPS, "self_judge": SJ_STEPS, "dpo": DPO_STEPS}
EVERY = {"jsft": 5, "self_judge": 2, "dpo": 2}   # checkpoint periods
CUT = {"jsft": 10}                    # the resumed copy starts after this step
MESHES = ((8, 1, 1), (2, 4, 1))
# JSFT and self-judge on both meshes (data parallel; data x FSDP), DPO on (8,1,1).
CASES = [(p, MESHES[0]) for p in ("jsft", "self_judge", "dpo")] + [
    (p, MESHES[1]) for p in ("jsft", "self_judge")]
TOLERANCE = 1e-6                       # max |difference| of final params, 2 vs 1 process
KILL_EXIT_BOUND = 60                   # s: the survivor of a SIGKILLed peer exits within
HEARTBEAT_S = 10                       # the coordination service's timeout in these runs


def mesh_name(mesh) -> str:
    return "x".join(map(str, mesh))


def overrides(phase: str, run_dir, tfds_dir, mesh) -> dict:
    """The config of a run (tests/phases/small_config.py:<phase> and these keys), the same
    for 1 or 2 processes."""
    out = {"run_dir": str(run_dir), "data.tfds_dir": str(tfds_dir), "mesh.shape": tuple(mesh),
           "checkpoint.every_steps": EVERY[phase], "checkpoint.keep": 10,
           "log.every_steps": 1}
    if phase == "jsft":
        out.update({"train.steps": JSFT_STEPS, "data.num_epochs": 3})
    elif phase == "dpo":  # from scratch (the preset starts from an SFT run)
        out.update({"train.steps": DPO_STEPS, "data.num_epochs": 2, "model.source": "tiny"})
    else:
        out.update({"self_judge.steps": SJ_STEPS, "model.source": "tiny"})
    return out


def sjjax_args(phase: str, run_dir, tfds_dir, mesh) -> list[str]:
    """The same run as `python -m sjjax.main` arguments."""
    return [f"--config=tests/phases/small_config.py:{phase}"] + [
        f"--config.{k}={v}" for k, v in overrides(phase, run_dir, tfds_dir, mesh).items()]


def base_env(cache) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SJJAX_")}
    # One compilation cache for the module: a program compiled by one run (e.g. the
    # training step on a mesh) is read back by the next run that needs it.
    # The runs' programs are compiled with XLA's cheap settings: compiling is most of
    # these tiny runs' time (tests/compile_flags.py).
    xla = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
               XLA_FLAGS=with_cheap_compile(" ".join(xla)),
               JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               SJJAX_HEARTBEAT_TIMEOUT_S=str(HEARTBEAT_S))
    return env


def _check(proc, started):
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-4000:]
    return time.time() - started


def run_single(args, env, program=("-m", "sjjax.main"), timeout=600):
    """One process, 8 simulated devices."""
    env = dict(env, XLA_FLAGS=f"{env['XLA_FLAGS']} --xla_force_host_platform_device_count=8")
    started = time.time()
    return _check(subprocess.run([sys.executable, *program, *args], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=timeout), started)


def run_two(args, env, program=None, timeout=600):
    """Two processes x 4 devices: `python -m sjjax.launch_local` (sjjax.main), or the
    processes of `launch_local.process_commands` running `program` (the test driver)."""
    started = time.time()
    if program is None:
        proc = subprocess.run([sys.executable, "-m", "sjjax.launch_local", "--processes", "2",
                               "--devices-per-process", "4", "--", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)
        return _check(proc, started)
    # Output to files, not pipes: read one after the other, the pipe of a process that
    # writes much would fill and block it, and through the collectives the other too.
    logs = [tempfile.TemporaryFile("w+") for _ in range(2)]
    procs = [subprocess.Popen(argv, cwd=ROOT, env=penv, stdout=log,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
             for log, (argv, penv) in zip(logs, launch_local.process_commands(
                 args, 2, 4, environ=env, program=program))]
    try:
        deadline = started + timeout
        for p in procs:
            p.wait(timeout=max(deadline - time.time(), 1))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    for p, log in zip(procs, logs):
        log.seek(0)
        assert p.returncode == 0, log.read()[-6000:]
        log.close()
    return time.time() - started


def run_driver(specs, processes: int, root, env, name: str) -> float:
    """Several runs in one process (or in each of two): tests/phases/multiprocess_runs.py."""
    path = root / f"{name}.json"
    path.write_text(json.dumps(specs))
    program = ("tests/phases/multiprocess_runs.py",)
    return (run_single if processes == 1 else run_two)([str(path)], env, program=program)


def interrupted_copy(source, target, cut: int) -> None:
    """A finished run dir as if its run had stopped right after saving step `cut`."""
    shutil.copytree(source, target)
    shutil.rmtree(os.path.join(target, "final"))
    for step in os.listdir(os.path.join(target, "checkpoints")):
        if step.isdigit() and int(step) > cut:
            shutil.rmtree(os.path.join(target, "checkpoints", step))


def max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)),
                            initial=0.0))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def bitwise(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def example_log(path, process: int) -> list[list[int]]:
    rows = [json.loads(l) for l in open(f"{path}.p{process}")]
    assert [r["step"] for r in rows] == list(range(len(rows)))
    return [r["index"] for r in rows]


FIGURES: dict = {}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("multiprocess")


@pytest.fixture(scope="module")
def env(root):
    return base_env(root / "jax-cache")


@pytest.fixture(scope="module")
def runs(root, env):
    """The runs the tests read, in an order that lets each serve several claims:

    1. the single-process runs of CASES, in one process;
    2. `python -m sjjax.main` as 2 processes (`launch_local.process_commands`) resumes a
       copy of the single-process JSFT run cut at its first checkpoint (1 -> 2), saves
       the next checkpoint and loses process 1 to SIGKILL (the outcome is recorded);
    3. the two-process runs of CASES in one pair of processes, which then rerun the
       killed run's config: it resumes from the checkpoint the killed run left (2 -> 2).

    -> {(phase, mesh, processes): run_dir, "killed": run_dir, "kill": what happened}"""
    out, specs = {}, {1: [], 2: []}
    for phase, mesh in CASES:
        for n in (1, 2):
            run_dir = root / f"{phase}-{mesh_name(mesh)}-p{n}"
            log = ({"SJJAX_EXAMPLE_LOG": f"{run_dir}.examples"} if phase in ("jsft", "dpo")
                   else {})
            specs[n].append({"phase": phase, "env": log,
                             "overrides": overrides(phase, run_dir, root / "tfds", mesh)})
            out[phase, mesh, n] = run_dir
    FIGURES[f"1 process: {len(specs[1])} run(s), wall s"] = round(
        run_driver(specs[1], 1, root, env, "p1"), 1)
    killed = root / "jsft-killed"
    interrupted_copy(out["jsft", MESHES[0], 1], killed, EVERY["jsft"])
    started = time.time()
    out["kill"] = kill_process_1(sjjax_args("jsft", killed, root / "tfds", MESHES[0]),
                                 killed / "checkpoints" / str(2 * EVERY["jsft"]), root, env)
    FIGURES["killed run (to the survivor's exit) wall s"] = round(time.time() - started, 1)
    out["killed"] = killed
    out["killed saved"] = max(int(d) for d in os.listdir(killed / "checkpoints")
                              if d.isdigit())
    specs[2].append({"phase": "jsft", "overrides": overrides("jsft", killed, root / "tfds",
                                                             MESHES[0])})
    FIGURES[f"2 processes: {len(specs[2])} runs, wall s"] = round(
        run_driver(specs[2], 2, root, env, "p2"), 1)
    return out


def kill_process_1(args, checkpoint, root, env) -> dict:
    """Starts the 2 processes of `python -m sjjax.main args`, SIGKILLs process 1 once
    `checkpoint` exists, waits up to KILL_EXIT_BOUND s for process 0 to exit.
    -> {"status": process 0's, "seconds": to its exit (None: still running), "output"}"""
    procs, logs = [], []
    try:
        for i, (argv, penv) in enumerate(launch_local.process_commands(args, 2, 4,
                                                                       environ=env)):
            logs.append(open(root / f"killed.p{i}.log", "w+"))
            procs.append(subprocess.Popen(argv, cwd=ROOT, env=penv, stdout=logs[-1],
                                          stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.time() + 240
        while not checkpoint.is_dir():
            assert all(p.poll() is None for p in procs), "a process ended before the kill"
            assert time.time() < deadline, f"no {checkpoint} to kill after"
            time.sleep(0.02)
        os.killpg(procs[1].pid, signal.SIGKILL)
        killed = time.time()
        try:
            procs[0].wait(timeout=KILL_EXIT_BOUND)
            took = time.time() - killed
        except subprocess.TimeoutExpired:
            took = None
        logs[0].seek(0)
        return {"status": procs[0].poll(), "seconds": took, "output": logs[0].read()}
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        for f in logs:
            f.close()


@pytest.mark.parametrize("phase,mesh", CASES, ids=lambda x: x if isinstance(x, str)
                         else mesh_name(x))
def test_two_processes_match_one(runs, phase, mesh):
    one, meta_one = final_params(runs[phase, mesh, 1])
    two, meta_two = final_params(runs[phase, mesh, 2])
    steps = STEPS[phase]
    assert meta_one["step"] == meta_two["step"] == steps
    diff = max_diff(one, two)
    FIGURES[f"{phase} {mesh_name(mesh)} max |diff| 2 vs 1 process"] = diff
    FIGURES[f"{phase} {mesh_name(mesh)} bitwise 2 vs 1 process"] = bitwise(one, two)
    assert diff <= TOLERANCE
    # metrics written once: one row per step
    rows = [json.loads(l) for l in open(runs[phase, mesh, 2] / "metrics.jsonl")]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))


def test_dpo_processes_hold_the_whole_batch_each_pair_once_per_epoch(runs):
    """Offline DPO on 2 processes: every process reads the global batch of pairs (the
    single-process one) and each pair is used once per epoch."""
    for mesh in [m for p, m in CASES if p == "dpo"]:
        log = f"{runs['dpo', mesh, 2]}.examples"
        p0, p1 = example_log(log, 0), example_log(log, 1)
        single = example_log(f"{runs['dpo', mesh, 1]}.examples", 0)
        assert p0 == p1 == single and len(single) == DPO_STEPS
        n = json.load(open(runs["dpo", mesh, 2] / "final" / "meta.json"))["summary"]["examples"]
        seen = set()
        for step, rows in enumerate(single):
            chosen, rejected = rows[:len(rows) // 2], rows[len(rows) // 2:]
            assert chosen == rejected  # row i and row b + i are one pair
            for i in (i for i in chosen if i >= 0):
                assert i not in seen, f"pair {i} twice in an epoch (step {step})"
                seen.add(i)
            if len(seen) == n:
                seen = set()


def test_each_example_once_per_epoch_across_processes(runs):
    for mesh in [m for p, m in CASES if p == "jsft"]:
        log = f"{runs['jsft', mesh, 2]}.examples"
        p0, p1 = example_log(log, 0), example_log(log, 1)
        single = example_log(f"{runs['jsft', mesh, 1]}.examples", 0)
        assert len(p0) == len(p1) == len(single) == JSFT_STEPS
        meta = json.load(open(runs["jsft", mesh, 2] / "final" / "meta.json"))
        n = meta["summary"]["examples"]
        seen, epochs = set(), 0
        for step, (a, b) in enumerate(zip(p0, p1)):
            assert len(a) == len(b) == len(single[step]) // 2  # each process: half a batch
            assert a + b == single[step]                       # the two halves, in order
            for i in (i for i in a + b if i >= 0):
                assert i not in seen, f"example {i} twice in epoch {epochs} (step {step})"
                seen.add(i)
            if len(seen) == n:
                epochs, seen = epochs + 1, set()
        assert epochs >= 2, epochs  # JSFT_STEPS steps cover two whole epochs


def test_checkpoint_written_by_two_processes_resumes_in_one(runs, root, env):
    """A copy of the two-process JSFT run cut at CUT, resumed by `python -m sjjax.main`
    in one process on 8 devices."""
    mesh = MESHES[0]
    target = root / "jsft-resume-2to1"
    interrupted_copy(runs["jsft", mesh, 2], target, CUT["jsft"])
    FIGURES["jsft resume 2->1 (sjjax.main) wall s"] = round(
        run_single(sjjax_args("jsft", target, root / "tfds", mesh), env), 1)
    params, meta = final_params(target)
    assert meta["step"] == JSFT_STEPS
    diff = max_diff(params, final_params(runs["jsft", mesh, 1])[0])
    FIGURES["jsft resumed 2->1 vs uninterrupted 1-process max |diff|"] = diff
    assert diff <= TOLERANCE


def test_killing_one_process_ends_the_other_and_the_rerun_resumes(runs):
    kill = runs["kill"]
    lines = [l for l in kill["output"].splitlines() if l.startswith("sjjax:")]
    FIGURES["survivor exit s after SIGKILL of its peer"] = kill["seconds"]
    FIGURES["survivor's lines"] = lines
    assert kill["seconds"] is not None, \
        f"process 0 still running {KILL_EXIT_BOUND} s after process 1 died"
    assert kill["status"] == 3, kill["output"][-3000:]
    assert any(l.startswith("sjjax: error: process 1 of 2 is lost") for l in lines), \
        kill["output"][-3000:]
    # It had resumed the single-process checkpoint and saved the next one; the rerun
    # (the same config, 2 processes) resumed from there and finished.
    assert runs["killed saved"] >= 2 * EVERY["jsft"]
    resumed, meta = final_params(runs["killed"])
    assert meta["step"] == JSFT_STEPS
    for n in (2, 1):
        diff = max_diff(resumed, final_params(runs["jsft", MESHES[0], n])[0])
        FIGURES[f"jsft killed+resumed vs uninterrupted {n}-process max |diff|"] = diff
        assert diff <= TOLERANCE


def test_launch_sh_starts_the_command_these_tests_run(root):
    """tpu_scripts/launch.sh --dry-run: on every host the `python -m sjjax.main ...` that
    launch_local starts once per process here (only the interpreter and the env differ)."""
    args = sjjax_args("jsft", "gs://b/runs/mp", root / "tfds", MESHES[0])
    cli = [a for a in args if not a.startswith(("--config=", "--config.run_dir="))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SJJAX_")}
    out = subprocess.run(
        ["bash", str(ROOT / "tpu_scripts" / "launch.sh"), "--dry-run", "--project=p",
         "--zone=z", "--name=n", "--config=tests/phases/small_config.py:jsft",
         "--run-dir=gs://b/runs/mp", *cli], capture_output=True, text=True, env=env,
        timeout=60)
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    remote = [a for a in shlex.split(line) if a.startswith("--command=")][0]
    job = shlex.split(remote.split("bash -c ", 1)[1])[0]
    program = shlex.split(job.split(" && ", 1)[1].split(" > ", 1)[0])
    assert program[:2] == ["env", "SJJAX_DISTRIBUTED=1"]
    local = launch_local.process_commands(args, 2, 4, port=1234, environ={})
    for argv, penv in local:
        assert program[3:] == argv[1:]  # -m sjjax.main and every argument
        assert penv["SJJAX_NUM_PROCESSES"] == "2"
    assert [penv["SJJAX_PROCESS_ID"] for _, penv in local] == ["0", "1"]


def test_batches_assemble_the_single_process_batch_on_every_mesh(env):
    """This host's rows (JSFT) and the whole batch every process holds (self-judge), on
    (8,1,1), (2,4,1) and (1,8,1): the global batch is the single-process one."""
    took = run_two(["tests/phases/multiprocess_placement.py"], env, program=())
    FIGURES["batch placement check (2 processes) wall s"] = round(took, 1)


def test_zz_figures():
    """Prints the measured figures (pytest -s), for docs/multiprocess.md."""
    print(json.dumps(FIGURES, indent=1))


@pytest.mark.parametrize("environ,wrong", [
    ({"SJJAX_COORDINATOR_ADDRESS": "127.0.0.1:1234"}, "SJJAX_NUM_PROCESSES, SJJAX_PROCESS_ID"),
    ({"SJJAX_COORDINATOR_ADDRESS": "localhost", "SJJAX_NUM_PROCESSES": "2",
      "SJJAX_PROCESS_ID": "0"}, "SJJAX_COORDINATOR_ADDRESS='localhost'"),
    ({"SJJAX_COORDINATOR_ADDRESS": "h:1", "SJJAX_NUM_PROCESSES": "two",
      "SJJAX_PROCESS_ID": "0"}, "SJJAX_NUM_PROCESSES='two'"),
    ({"SJJAX_COORDINATOR_ADDRESS": "h:1", "SJJAX_NUM_PROCESSES": "2",
      "SJJAX_PROCESS_ID": "2"}, "SJJAX_PROCESS_ID=2"),
    ({"SJJAX_DISTRIBUTED": "1", "SJJAX_HEARTBEAT_TIMEOUT_S": "0"}, "SJJAX_HEARTBEAT_TIMEOUT_S"),
])
def test_bad_distributed_environment_names_the_variable(environ, wrong):
    from sjjax import distributed
    from sjjax.errors import ConfigError
    with pytest.raises(ConfigError, match=wrong.replace("(", r"\(")):
        distributed.settings_from_env(environ)


def test_distributed_settings():
    from sjjax import distributed
    assert distributed.settings_from_env({}) is None
    s = distributed.settings_from_env({"SJJAX_COORDINATOR_ADDRESS": "127.0.0.1:99",
                                       "SJJAX_NUM_PROCESSES": "2", "SJJAX_PROCESS_ID": "1",
                                       "SJJAX_HEARTBEAT_TIMEOUT_S": "7"})
    assert (s.coordinator_address, s.num_processes, s.process_id) == ("127.0.0.1:99", 2, 1)
    assert (s.heartbeat_timeout_s, s.shutdown_timeout_s, s.init_timeout_s) == (7, 30, 120)
    pod = distributed.settings_from_env({"SJJAX_DISTRIBUTED": "1"})
    assert pod.coordinator_address is None and pod.process_id is None  # JAX detects them
    assert distributed.on_accelerator({"JAX_PLATFORMS": "tpu"})
    assert not distributed.on_accelerator({"JAX_PLATFORMS": "cpu"})

