"""Joining several processes into one JAX runtime (TPU pods, multi-node GPU, or N
processes on one machine), before anything touches a device.

Which processes, from the environment (`python -m sjjax.main` reads it first thing):

    SJJAX_DISTRIBUTED=1              a TPU pod slice (tpu_scripts/launch.sh sets it):
                                     JAX finds the coordinator, count and id itself
    SJJAX_COORDINATOR_ADDRESS=h:port the explicit form (any machine; what
    SJJAX_NUM_PROCESSES=N            `python -m sjjax.launch_local` sets): process 0
    SJJAX_PROCESS_ID=i               hosts the coordination service at h:port

and, for either form, how long a lost process may go unnoticed (seconds):

    SJJAX_HEARTBEAT_TIMEOUT_S  (default 30)   a process silent this long is declared
                                              lost; every other process then exits
    SJJAX_SHUTDOWN_TIMEOUT_S   (default 30)   how long an exiting process waits for the
                                              others at the shutdown barrier
    SJJAX_INIT_TIMEOUT_S       (default 120)  how long to wait for all N to connect

When a process dies, the others either block in their next collective (gloo waits for
the peer) or see it fail ("Connection reset by peer": `sjjax.main` then waits for the
watchdog's verdict, `after_failed_collective`). Two detectors end them:
- `PeerWatchdog` (ours): every process posts a heartbeat to the coordination service's
  key-value store each second; a peer silent for SJJAX_HEARTBEAT_TIMEOUT_S (or the
  coordinator becoming unreachable) makes this process print one line naming the lost
  process, `sjjax: error: process 1 of 2 is lost ...`, and exit with status 3;
- JAX's coordination service, the backstop (e.g. for a process wedged while holding the
  GIL), with a heartbeat timeout of three times that: it aborts the survivors with its own
  message ("The following tasks are unhealthy (stopped sending heartbeats): 1").
JAX's defaults (100 s, 300 s, 300 s) would leave the survivors of a crash idle for
minutes; the values are set explicitly here so the bound is known (docs/multiprocess.md).

On CPU, cross-process collectives need an implementation: gloo is switched on unless
an accelerator is in use (JAX_PLATFORMS naming another platform, or a TPU/CUDA plugin
installed), so a pod's TPU or GPU collectives are left alone.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib.util
import logging
import os
import sys
import threading
import time

from sjjax.errors import ConfigError

log = logging.getLogger("sjjax")

DEFAULT_TIMEOUTS = dict(SJJAX_HEARTBEAT_TIMEOUT_S=30, SJJAX_SHUTDOWN_TIMEOUT_S=30,
                        SJJAX_INIT_TIMEOUT_S=120)
EXPLICIT = ("SJJAX_COORDINATOR_ADDRESS", "SJJAX_NUM_PROCESSES", "SJJAX_PROCESS_ID")
EXIT_LOST_PROCESS = 3  # the exit status of a process whose peer was lost


@dataclasses.dataclass(frozen=True)
class Settings:
    """What `jax.distributed.initialize` gets; None fields are left to JAX's cluster
    detection (TPU pods)."""
    coordinator_address: str | None
    num_processes: int | None
    process_id: int | None
    heartbeat_timeout_s: int
    shutdown_timeout_s: int
    init_timeout_s: int


def _int(environ, name: str, minimum: int) -> int:
    raw = environ.get(name, "")
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ConfigError(f"{name}={raw!r}: expected an integer >= {minimum}")
    return value


def settings_from_env(environ=None) -> Settings | None:
    """The settings the environment asks for, or None for a single-process run.
    Raises ConfigError naming the variable that is wrong."""
    environ = os.environ if environ is None else environ
    given = [k for k in EXPLICIT if environ.get(k)]
    if not given and environ.get("SJJAX_DISTRIBUTED") != "1":
        return None
    timeouts = {k: _int(environ, k, 1) if environ.get(k) else v
                for k, v in DEFAULT_TIMEOUTS.items()}
    address = count = pid = None
    if given:
        missing = [k for k in EXPLICIT if k not in given]
        if missing:
            raise ConfigError(f"{', '.join(missing)}: set together with {', '.join(given)} "
                              f"(all three name a multi-process run)")
        address = environ["SJJAX_COORDINATOR_ADDRESS"]
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"SJJAX_COORDINATOR_ADDRESS={address!r}: expected host:port")
        count = _int(environ, "SJJAX_NUM_PROCESSES", 1)
        pid = _int(environ, "SJJAX_PROCESS_ID", 0)
        if pid >= count:
            raise ConfigError(f"SJJAX_PROCESS_ID={pid}: must be below "
                              f"SJJAX_NUM_PROCESSES={count}")
    return Settings(address, count, pid, timeouts["SJJAX_HEARTBEAT_TIMEOUT_S"],
                    timeouts["SJJAX_SHUTDOWN_TIMEOUT_S"], timeouts["SJJAX_INIT_TIMEOUT_S"])


def on_accelerator(environ=None) -> bool:
    """True when the run will use a TPU or GPU (then CPU collectives are not ours to set)."""
    environ = os.environ if environ is None else environ
    platforms = [p for p in environ.get("JAX_PLATFORMS", "").lower().split(",") if p]
    if platforms:
        return any(p != "cpu" for p in platforms)
    return any(importlib.util.find_spec(m) is not None
               for m in ("libtpu", "jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm_plugin"))


def initialize(settings: Settings) -> None:
    """Joins this process to the run's JAX runtime (blocks until all N have joined)."""
    import jax
    if not on_accelerator():
        # XLA:CPU has no cross-process collectives by default; gloo runs them over TCP.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=settings.coordinator_address,
        num_processes=settings.num_processes, process_id=settings.process_id,
        initialization_timeout=settings.init_timeout_s,
        # The backstop: PeerWatchdog reports a lost process first, naming it. 3x, not
        # 2x: the service counts from the peer's last heartbeat, which may be well before
        # its death (measured: with 2x it aborted the survivor ~10 s after a kill, racing
        # the watchdog's verdict at 10 s).
        heartbeat_timeout_seconds=3 * settings.heartbeat_timeout_s,
        shutdown_timeout_seconds=settings.shutdown_timeout_s)
    log.info("process %d of %d joined %s (%d local of %d devices; heartbeat timeout %d s)",
             jax.process_index(), jax.process_count(),
             settings.coordinator_address or "the pod's coordinator", jax.local_device_count(),
             jax.device_count(), settings.heartbeat_timeout_s)
    if jax.process_count() > 1:
        global _WATCHDOG
        _WATCHDOG = PeerWatchdog(settings.heartbeat_timeout_s)
        _WATCHDOG.start()


_WATCHDOG: "PeerWatchdog | None" = None


def after_failed_collective(error: BaseException) -> None:
    """Called with an error that ended the run. On a multi-process run a JAX runtime
    error is most often a collective whose peer died (gloo: "Connection reset by peer"):
    then this waits for the watchdog to name the lost process and exit (status 3),
    at most the heartbeat timeout, instead of exiting into JAX's shutdown barrier,
    which would wait for the dead peer. Returns (the caller re-raises) when no process
    was lost or this is not such an error."""
    import jax
    if _WATCHDOG is None or not isinstance(error, jax.errors.JaxRuntimeError):
        return
    first = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    print(f"sjjax: a computation with the other processes failed ({first}); waiting up "
          f"to {_WATCHDOG.timeout_s:g} s to see whether a process was lost",
          file=sys.stderr, flush=True)
    time.sleep(_WATCHDOG.timeout_s + 3 * _WATCHDOG.every_s)  # lost() exits meanwhile


def initialize_from_env(environ=None) -> Settings | None:
    """`initialize` with the environment's settings, if it names a multi-process run."""
    settings = settings_from_env(environ)
    if settings is not None:
        initialize(settings)
    return settings


def is_primary() -> bool:
    """Process 0: the one that writes the run's files (config, metrics, final meta)."""
    import jax
    return jax.process_index() == 0


def barrier(name: str, timeout_s: int = 3600) -> None:
    """Every process waits here until all have arrived (no-op with one process). A
    barrier of the coordination service (as Orbax's), not a device collective: no
    program to compile and no collective to set up just to wait."""
    import jax
    if jax.process_count() > 1:
        from jax._src import distributed as jax_distributed
        jax_distributed.global_state.client.wait_at_barrier(name, timeout_in_ms=timeout_s * 1000)


class PeerWatchdog:
    """Ends this process, with a line naming the lost process, when a peer stops posting
    heartbeats for `timeout_s` or the coordinator (process 0) becomes unreachable.

    Heartbeats are counters in the coordination service's key-value store
    (sjjax/heartbeat/<process>), written and read by a daemon thread every `every_s`
    (XLA computations and compiles release the GIL, so a busy process still beats). A
    process that is exiting normally posts "done" and is never reported."""

    PREFIX = "sjjax/heartbeat/"

    def __init__(self, timeout_s: float, every_s: float = 1.0):
        import jax
        from jax._src import distributed as jax_distributed
        self.client = jax_distributed.global_state.client
        self.address = jax_distributed.global_state.coordinator_address
        self.me, self.count = jax.process_index(), jax.process_count()
        self.timeout_s, self.every_s = timeout_s, every_s
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="sjjax-peer-watchdog", daemon=True).start()
        atexit.register(self.stop)  # before JAX's own atexit shutdown (atexit is LIFO)

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            try:
                self.client.key_value_set(f"{self.PREFIX}{self.me}", "done", allow_overwrite=True)
            except Exception:  # the coordinator may be gone already
                pass

    def _run(self) -> None:
        started = time.monotonic()
        seen = {j: (None, started) for j in range(self.count) if j != self.me}
        beat = 0
        while not self._stop.wait(self.every_s):
            beat += 1
            try:
                self.client.key_value_set(f"{self.PREFIX}{self.me}", str(beat),
                                          allow_overwrite=True)
                values = dict(self.client.key_value_dir_get(self.PREFIX))
            except Exception as err:  # the coordination service (process 0) is gone
                if self._stop.is_set():
                    return
                self.lost(0, f"the coordinator at {self.address} is unreachable "
                             f"({str(err).splitlines()[0][:200]})")
            now = time.monotonic()
            for j, (value, since) in seen.items():
                current = values.get(f"{self.PREFIX}{j}")
                if current == "done":
                    continue
                if current != value:
                    seen[j] = (current, now)
                elif now - since > self.timeout_s:
                    self.lost(j, f"no heartbeat for {now - since:.0f} s "
                                 f"(SJJAX_HEARTBEAT_TIMEOUT_S={self.timeout_s:g}): it died "
                                 f"or hangs")

    def lost(self, process: int, why: str) -> None:
        print(f"sjjax: error: process {process} of {self.count} is lost ({why}); process "
              f"{self.me} exits too. Rerun the same command on every process to resume from "
              f"the last checkpoint.", file=sys.stderr, flush=True)
        os._exit(EXIT_LOST_PROCESS)  # the main thread may be blocked in a collective
