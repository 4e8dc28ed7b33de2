"""N cooperating sjjax processes on one machine, as on a pod's hosts:

    python -m sjjax.launch_local --processes 2 --devices-per-process 4 -- \\
        --config=configs/jsft.py --config.mesh.shape='(8,1,1)'

starts `python -m sjjax.main <args after -->` N times on the loopback address; process i
gets SJJAX_COORDINATOR_ADDRESS=127.0.0.1:<free port>, SJJAX_NUM_PROCESSES=N,
SJJAX_PROCESS_ID=i (`sjjax.distributed`), JAX_PLATFORMS=cpu and
XLA_FLAGS=--xla_force_host_platform_device_count=<devices> (simulated CPU devices; the N
processes see N x devices global devices, talking through gloo collectives). Each output
line is prefixed with `[p<i>]`. The exit status is 0 when every process exits 0, else
the first failure's (128 + signal for a process killed by a signal); a process still
running `--grace` seconds after another failed is killed (the survivors normally exit
by themselves within the heartbeat timeout: docs/multiprocess.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def free_port() -> int:
    """A TCP port free on the loopback address now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_commands(sjjax_args, processes: int, devices_per_process: int,
                     port: int | None = None, environ=None, python: str = sys.executable,
                     program=("-m", "sjjax.main")) -> list[tuple[list[str], dict]]:
    """(argv, env) of each process: the same `python -m sjjax.main ...` (what
    tpu_scripts/launch.sh starts on every pod host), with its process id in env.
    `program`: what python runs instead of `-m sjjax.main` (a test driver)."""
    environ = dict(os.environ if environ is None else environ)
    port = port or free_port()
    xla = environ.get("XLA_FLAGS", "")
    xla = " ".join([f for f in xla.split() if "xla_force_host_platform_device_count" not in f]
                   + [f"--xla_force_host_platform_device_count={devices_per_process}"])
    out = []
    for i in range(processes):
        env = dict(environ, SJJAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   SJJAX_NUM_PROCESSES=str(processes), SJJAX_PROCESS_ID=str(i),
                   JAX_PLATFORMS="cpu", XLA_FLAGS=xla,
                   PYTHONUNBUFFERED="1")  # (its lines as they come, prefixed)
        out.append(([python, *program, *sjjax_args], env))
    return out


def _pump(stream, prefix: str, sink) -> None:
    for line in stream:
        sink.write(f"{prefix}{line}")
        sink.flush()


def _status(code: int) -> int:
    return 128 - code if code < 0 else code  # -9 (SIGKILL) -> 137, as a shell reports it


def launch(sjjax_args, processes: int, devices_per_process: int, grace: float = 90.0,
           port: int | None = None) -> int:
    """Runs the N processes to the end; returns the exit status (see the module doc)."""
    procs, pumps = [], []
    for i, (argv, env) in enumerate(process_commands(sjjax_args, processes,
                                                     devices_per_process, port)):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        procs.append(proc)
        pumps.append(threading.Thread(target=_pump, args=(proc.stdout, f"[p{i}] ", sys.stdout),
                                      daemon=True))
        pumps[-1].start()

    def forward(signum, frame):  # Ctrl-C / SIGTERM: every process stops at one step
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    first_failure, failed_at = None, None
    try:
        while any(p.poll() is None for p in procs):
            for i, p in enumerate(procs):
                if first_failure is None and p.poll() not in (None, 0):
                    first_failure, failed_at = i, time.time()
                    print(f"sjjax.launch_local: process {i} exited with status "
                          f"{_status(p.returncode)}; the others should exit within the "
                          f"heartbeat timeout (killed after {grace:.0f} s)",
                          file=sys.stderr, flush=True)
            if failed_at is not None and time.time() - failed_at > grace:
                for i, p in enumerate(procs):
                    if p.poll() is None:
                        print(f"sjjax.launch_local: killing process {i}, still running "
                              f"{grace:.0f} s after process {first_failure} failed",
                              file=sys.stderr, flush=True)
                        p.kill()
            time.sleep(0.1)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for t in pumps:
            t.join(timeout=5)
    codes = [p.returncode for p in procs]
    if first_failure is None:
        first_failure = next((i for i, c in enumerate(codes) if c), None)
    return 0 if first_failure is None else _status(codes[first_failure])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sjjax.launch_local",
        description="Run `python -m sjjax.main ARGS` as N cooperating JAX processes on this "
                    "machine (CPU devices, gloo collectives, loopback coordinator).")
    parser.add_argument("--processes", type=int, default=2, help="number of processes (N)")
    parser.add_argument("--devices-per-process", type=int, default=4,
                        help="simulated CPU devices per process")
    parser.add_argument("--port", type=int, default=0,
                        help="coordinator port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--grace", type=float, default=90.0,
                        help="seconds the others may run on after one failed, then killed")
    parser.add_argument("sjjax_args", nargs=argparse.REMAINDER,
                        help="-- then the arguments of python -m sjjax.main")
    args = parser.parse_args(argv)
    rest = args.sjjax_args[1:] if args.sjjax_args[:1] == ["--"] else args.sjjax_args
    if args.processes < 1:
        parser.error(f"--processes {args.processes}: must be >= 1")
    if args.devices_per_process < 1:
        parser.error(f"--devices-per-process {args.devices_per_process}: must be >= 1")
    if not rest:
        parser.error("give the sjjax.main arguments after --, e.g. -- --config=configs/jsft.py")
    return launch(rest, args.processes, args.devices_per_process, args.grace,
                  args.port or None)


if __name__ == "__main__":
    sys.exit(main())
