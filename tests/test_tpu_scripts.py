"""tpu_scripts/*.sh: the gcloud commands their --dry-run prints for a v4-32 pod slice,
errors for missing settings, the remote launch/stop commands run in a fake $HOME,
and shellcheck."""

from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import subprocess
import time

import pytest

from tests.conftest import ROOT

SCRIPTS = ROOT / "tpu_scripts"
TARGET = ["--project=my-proj", "--zone=us-central2-b", "--name=sj-v4"]


def _env(**extra) -> dict:
    """The environment without SJJAX_* settings and with a `gcloud` that refuses to
    run, so that a script that ignored --dry-run could never reach a real project."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SJJAX_") and k != "CLOUDSDK_CORE_PROJECT"}
    env["PATH"] = f"{_guard_dir()}:{env.get('PATH', '')}"
    env.update(extra)
    return env


_GUARD: list[str] = []


@pytest.fixture(autouse=True, scope="module")
def _gcloud_guard(tmp_path_factory):
    d = tmp_path_factory.mktemp("gcloud-guard")
    (d / "gcloud").write_text("#!/bin/sh\necho 'test guard: real gcloud called' >&2\nexit 99\n")
    (d / "gcloud").chmod(0o755)
    _GUARD[:] = [str(d)]
    yield
    _GUARD.clear()


def _guard_dir() -> str:
    assert _GUARD, "the _gcloud_guard fixture is not active"
    return _GUARD[0]


def run_script(name: str, *args: str, env: dict | None = None, check: bool = True):
    proc = subprocess.run(["bash", str(SCRIPTS / name), *args], capture_output=True, text=True,
                          env=env or _env(), timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def dry_run(name: str, *args: str, env: dict | None = None) -> list[list[str]]:
    """The printed commands, each split into words as a shell would."""
    out = run_script(name, "--dry-run", *args, env=env).stdout
    return [shlex.split(line) for line in out.splitlines() if line.strip()]


def flag(cmd: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in cmd if a.startswith(name + "=")]
    assert len(values) == 1, (name, cmd)
    return values[0]


def remote_command(cmd: list[str]) -> str:
    return flag(cmd, "--command")


def assert_target(cmd: list[str]):
    assert flag(cmd, "--zone") == "us-central2-b"
    assert flag(cmd, "--project") == "my-proj"


# ------------------------------------------------------------------- create


def test_create_v4_32():
    cmds = dry_run("create.sh", *TARGET, "--accelerator-type=v4-32")
    assert len(cmds) == 1
    cmd = cmds[0]
    assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "sj-v4"]
    assert_target(cmd)
    assert flag(cmd, "--accelerator-type") == "v4-32"
    assert flag(cmd, "--version") == "tpu-ubuntu2204-base"
    assert "--spot" not in cmd


def test_create_queued_spot_with_bucket_and_env_settings():
    env = _env(SJJAX_PROJECT="my-proj", SJJAX_ZONE="us-east5-a", SJJAX_TPU_NAME="sj-v5p",
               SJJAX_ACCELERATOR_TYPE="v5p-16", SJJAX_BUCKET="gs://bk/sjjax")
    (create,) = dry_run("create.sh", "--queued", "--spot", env=env)  # no bucket creation
    assert create[4] == "create"
    cmds = dry_run("create.sh", "--queued", "--spot", "--create-bucket", "--",
                   "--network=my-net", env=env)
    create, bucket = cmds
    assert create[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "sj-v5p"]
    assert flag(create, "--node-id") == "sj-v5p"
    assert flag(create, "--accelerator-type") == "v5p-16"
    assert flag(create, "--runtime-version") == "v2-alpha-tpuv5"
    assert flag(create, "--zone") == "us-east5-a"
    assert "--spot" in create and "--network=my-net" in create
    assert bucket[:5] == ["gcloud", "storage", "buckets", "create", "gs://bk"]
    assert flag(bucket, "--location") == "us-east5"


def test_create_flags_override_environment_and_runtime_flag():
    env = _env(SJJAX_ACCELERATOR_TYPE="v5p-16", SJJAX_PROJECT="env-proj")
    (cmd,) = dry_run("create.sh", *TARGET, "--accelerator-type", "v5litepod-64",
                     "--runtime-version", "my-image", env=env)
    assert flag(cmd, "--accelerator-type") == "v5litepod-64"
    assert flag(cmd, "--version") == "my-image"
    assert flag(cmd, "--project") == "my-proj"


@pytest.mark.parametrize("script,args,missing", [
    ("create.sh", ["--zone=z", "--name=n", "--accelerator-type=v4-32"], "--project"),
    ("create.sh", ["--project=p", "--name=n", "--accelerator-type=v4-32"], "--zone"),
    ("create.sh", ["--project=p", "--zone=z", "--accelerator-type=v4-32"], "--name"),
    ("create.sh", TARGET, "--accelerator-type"),
    ("create.sh", TARGET + ["--accelerator-type=v4-8", "--create-bucket"], "--bucket"),
    ("launch.sh", TARGET + ["--bucket=gs://b"], "--config"),
    ("launch.sh", TARGET + ["--config=configs/jsft.py"], "--bucket"),
    ("setup.sh", ["--project=p", "--zone=z"], "--name"),
    ("delete.sh", ["--name=n", "--zone=z"], "--project"),
])
def test_missing_required_flag(script, args, missing):
    proc = run_script(script, *args, "--dry-run", check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert f"missing {missing}" in proc.stderr


def test_unknown_flag_and_help():
    proc = run_script("create.sh", *TARGET, "--acelerator-type=v4-32", check=False)
    assert proc.returncode == 2 and "unknown argument '--acelerator-type=v4-32'" in proc.stderr
    for script in sorted(p.name for p in SCRIPTS.glob("*.sh") if p.name != "common.sh"):
        proc = run_script(script, "--help")
        assert proc.stdout.startswith(f"Usage: tpu_scripts/{script}"), script
        assert "--dry-run" in proc.stdout, script


# ------------------------------------------------------------------- setup


def test_setup_copies_checkout_to_all_workers():
    tar, scp, ssh, rm = dry_run("setup.sh", *TARGET)
    assert tar[:2] == ["tar", "-czf"] and tar[-1] == "."
    assert tar[tar.index("-C") + 1] == str(ROOT)
    assert "--exclude=.git" in tar
    tarball = tar[2]
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
    assert scp[5:7] == [tarball, "sj-v4:sjjax-src.tgz"]
    assert flag(scp, "--worker") == "all"
    assert_target(scp)
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "sj-v4"]
    assert flag(ssh, "--worker") == "all"
    assert_target(ssh)
    remote = remote_command(ssh)
    assert "tar -xzf $HOME/sjjax-src.tgz -C $HOME/sjjax" in remote
    assert "--python 3.12 $HOME/sjjax-venv" in remote
    assert "$HOME/sjjax-venv/bin/pip install -q -e '.[tpu]'" in remote
    assert "jax.device_count()" in remote
    assert rm == ["rm", "-f", tarball]


def test_setup_from_git():
    cmds = dry_run("setup.sh", *TARGET, "--repo-url=https://example.com/sjjax.git",
                   "--ref=v0.1", "--extras=tpu,test", "--no-check")
    assert len(cmds) == 1
    remote = remote_command(cmds[0])
    assert flag(cmds[0], "--worker") == "all"
    assert "git clone -q https://example.com/sjjax.git $HOME/sjjax" in remote
    assert "checkout -q v0.1" in remote
    assert "pip install -q -e '.[tpu,test]'" in remote
    assert "jax.device_count()" not in remote


# ------------------------------------------------------------------- launch


def launch_cmd(*extra: str) -> list[str]:
    (cmd,) = dry_run("launch.sh", *TARGET, "--bucket=gs://my-bucket/sjjax",
                     "--config=configs/jsft.py:7b", "--run-name=jsft-7b", *extra)
    return cmd


def test_launch_on_all_workers_with_gs_run_dir():
    cmd = launch_cmd("--config.train.batch_size=16", "--env", "XLA_FLAGS=--xla_dump_to=/tmp/x",
                     "--", "--config.lora.targets=(\"q_proj\", \"v_proj\")")
    assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "sj-v4"]
    assert flag(cmd, "--worker") == "all"
    assert_target(cmd)
    remote = remote_command(cmd)
    assert "nohup" in remote and "setsid" in remote
    assert "$HOME/sjjax-logs/jsft-7b.log" in remote and "jsft-7b.pid" in remote
    # The program line, as the nested `bash -c` on the worker will see it.
    job = shlex.split(remote.split("bash -c ", 1)[1])[0]
    program = shlex.split(job.split(" && ", 1)[1].split(" > ", 1)[0])
    assert program == [
        "env", "SJJAX_DISTRIBUTED=1", "XLA_FLAGS=--xla_dump_to=/tmp/x",
        "$HOME/sjjax-venv/bin/python", "-m",
        "sjjax.main", "--config=configs/jsft.py:7b",
        "--config.run_dir=gs://my-bucket/sjjax/runs/jsft-7b", "--config.train.batch_size=16",
        "--config.lora.targets=(\"q_proj\", \"v_proj\")"]


def test_launch_default_run_name_and_run_dir_checks():
    (cmd,) = dry_run("launch.sh", *TARGET, "--bucket=gs://b", "--config=configs/self_judge.py")
    remote = remote_command(cmd)
    assert "--config=configs/self_judge.py --config.run_dir=gs://b/runs/self_judge-2" in remote
    (cmd,) = dry_run("launch.sh", *TARGET, "--config=configs/jsft.py", "--run-dir=gs://x/y")
    assert "--config.run_dir=gs://x/y " in remote_command(cmd)
    proc = run_script("launch.sh", *TARGET, "--bucket=gs://b", "--config=c.py",
                      "--config.run_dir=gs://other", "--dry-run", check=False)
    assert proc.returncode == 2 and "--run-dir" in proc.stderr


def _fake_home(tmp_path: pathlib.Path, python_body: str) -> dict:
    """A $HOME like a set-up worker: ~/sjjax, a fake venv python, a fake gcloud."""
    (tmp_path / "sjjax").mkdir()
    bin_dir = tmp_path / "sjjax-venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text("#!/bin/sh\n" + python_body)
    (bin_dir / "python").chmod(0o755)
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "gcloud").write_text('#!/bin/sh\necho "$@" > "$HOME/gcloud.args"\n')
    (tools / "gcloud").chmod(0o755)
    return _env(HOME=str(tmp_path), PATH=f"{tools}:{os.environ['PATH']}")


def _wait_for(predicate, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(shutil.which("setsid") is None, reason="setsid (util-linux) not installed")
def test_launch_remote_command_runs_the_program(tmp_path):
    env = _fake_home(tmp_path, 'for a in "$@"; do echo "ARG:$a"; done\npwd\n')
    remote = remote_command(launch_cmd("--config.x=a b"))
    proc = subprocess.run(["bash", "-c", remote], env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "started jsft-7b, pid" in proc.stdout
    log = tmp_path / "sjjax-logs" / "jsft-7b.log"
    assert _wait_for(lambda: log.exists() and "exit status 0" in log.read_text())
    assert _wait_for(lambda: (tmp_path / "gcloud.args").exists())
    lines = log.read_text().splitlines()
    assert lines == ["ARG:-m", "ARG:sjjax.main", "ARG:--config=configs/jsft.py:7b",
                     "ARG:--config.run_dir=gs://my-bucket/sjjax/runs/jsft-7b", "ARG:--config.x=a b",
                     str(tmp_path / "sjjax"), "exit status 0"]
    assert (tmp_path / "sjjax-logs" / "latest").read_text().strip() == "jsft-7b"
    gcloud_args = (tmp_path / "gcloud.args").read_text().split()
    assert gcloud_args[:2] == ["storage", "cp"]
    assert gcloud_args[3].startswith("gs://my-bucket/sjjax/runs/jsft-7b/logs/")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.skipif(shutil.which("setsid") is None, reason="setsid (util-linux) not installed")
def test_stop_kills_the_launched_run(tmp_path):
    env = _fake_home(tmp_path, "sleep 30\n")
    subprocess.run(["bash", "-c", remote_command(launch_cmd())], env=env, check=True,
                   capture_output=True, timeout=30)
    pid = int((tmp_path / "sjjax-logs" / "jsft-7b.pid").read_text())
    (stop,) = dry_run("stop.sh", *TARGET)
    assert flag(stop, "--worker") == "all"
    try:
        out = subprocess.run(["bash", "-c", remote_command(stop)], env=env, capture_output=True,
                             text=True, timeout=30).stdout
        assert "stopped jsft-7b" in out
        assert _wait_for(lambda: not _group_alive(pid))
        out = subprocess.run(["bash", "-c", remote_command(stop)], env=env, capture_output=True,
                             text=True, timeout=30).stdout
        assert "jsft-7b is not running" in out
    finally:
        try:
            os.killpg(pid, 9)
        except ProcessLookupError:
            pass


# ------------------------------------------------------------------- logs, status, delete


def test_logs_status_delete():
    (logs,) = dry_run("logs.sh", *TARGET, "--run-name=jsft-7b", "--lines=20")
    assert flag(logs, "--worker") == "all"
    assert remote_command(logs).startswith("tail -n 20 -F $HOME/sjjax-logs/jsft-7b.log | sed")
    (logs,) = dry_run("logs.sh", *TARGET, "--worker=0", "--no-follow")
    assert flag(logs, "--worker") == "0"
    assert remote_command(logs).startswith("tail -n 100 $HOME/sjjax-logs/latest.log")

    describe, runs = dry_run("status.sh", *TARGET, "--runs")
    assert describe[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "describe", "sj-v4"]
    assert flag(runs, "--worker") == "all"

    (delete,) = dry_run("delete.sh", *TARGET, "--yes")
    assert delete == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "sj-v4",
                      "--zone=us-central2-b", "--project=my-proj", "--quiet"]
    (delete,) = dry_run("delete.sh", *TARGET, "--queued")
    assert delete[:6] == ["gcloud", "compute", "tpus", "queued-resources", "delete", "sj-v4"]
    assert "--force" in delete and "--quiet" not in delete


def test_gcloud_accepts_the_printed_flags(tmp_path):
    """Each printed gcloud command, run by the real SDK with an empty config (no account):
    gcloud parses the arguments first, so it must fail on the missing account, never on
    an unrecognized or missing argument. Nothing reaches the network."""
    if shutil.which("gcloud") is None:
        pytest.skip("the Google Cloud SDK (gcloud) is not installed")
    cmds = (dry_run("create.sh", *TARGET, "--accelerator-type=v4-32", "--bucket=gs://bk",
                    "--create-bucket")
            + dry_run("create.sh", *TARGET, "--accelerator-type=v5litepod-64", "--queued",
                      "--spot")
            + dry_run("setup.sh", *TARGET)[1:3] + [launch_cmd()]
            + dry_run("status.sh", *TARGET, "--queued")
            + dry_run("delete.sh", *TARGET, "--queued", "--yes"))
    # No credentials can be found: a fresh config dir, no credential variables, no GCE
    # metadata server; and the APIs point at a closed local port in any case.
    env = {k: v for k, v in _env(PATH=os.environ["PATH"]).items()
           if not k.startswith(("CLOUDSDK_", "GOOGLE_", "GCE_"))}
    dead = "http://127.0.0.1:9/"
    env.update(CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), CLOUDSDK_CORE_DISABLE_PROMPTS="1",
               CLOUDSDK_CORE_CHECK_GCE_METADATA="false",
               CLOUDSDK_API_ENDPOINT_OVERRIDES_TPU=dead,
               CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE=dead,
               CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE=dead)
    gcloud = shutil.which("gcloud")
    for cmd in cmds:
        assert cmd[0] == "gcloud"
        proc = subprocess.run([gcloud, *cmd[1:]], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode != 0
        assert "active account" in proc.stderr, (cmd, proc.stderr[-2000:])


# ------------------------------------------------------------------- shellcheck


def test_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = sorted(str(p) for p in SCRIPTS.glob("*.sh"))
    proc = subprocess.run(["shellcheck", "-x", *scripts], capture_output=True, text=True,
                          cwd=SCRIPTS, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
