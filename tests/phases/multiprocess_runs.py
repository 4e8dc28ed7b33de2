"""`python tests/phases/multiprocess_runs.py RUNS.json`: several runs of tests/phases/small_config.py, one after
another, in this process (used by test_multiprocess.py to pay the interpreter start, the
gloo connections and Orbax's first save once per process instead of once per run).

RUNS.json: [{"phase": ..., "overrides": {dotted key: value}, "env": {...}}];
lists and tuples in overrides are passed as tuples. As `python -m sjjax.main` does, the
process first joins the multi-process runtime when the SJJAX_* variables name one (set
by `sjjax.launch_local.process_commands`)."""

import json
import os
import sys

from sjjax import distributed
from sjjax.phases import run_phase
from tests.phases.small_config import get_config
from tests.phases.tiny_config import apply_overrides


def compile_once_for_all_processes() -> None:
    """Process 0 compiles each program of the processes' shared mesh; the others wait
    for its executable (JAX's jax_share_binary_between_hosts) instead of compiling the
    same program themselves: on this 2-core machine that halves the compile time of the
    2-process runs, and compiling is most of their time.

    JAX keys a program by, among others, the fingerprint of the processes' topology,
    which on CPU differs between processes: process 1 would then wait for a key process
    0 never shares (and never find process 0's persistent-cache entries either). So the
    key hashes the devices' kinds instead (JAX's own fallback where a backend has no
    topology fingerprint); the device assignment and the mesh stay in the key through
    the compile options. Private JAX functions: if they are gone, every process
    compiles for itself, as without this."""
    from jax._src import cache_key
    if not hasattr(cache_key, "_hash_accelerator_config") or \
            not hasattr(cache_key, "_hash_devices"):
        return
    cache_key._hash_accelerator_config = cache_key._hash_devices
    import jax
    jax.config.update("jax_share_binary_between_hosts", True)


if __name__ == "__main__":
    distributed.initialize_from_env()
    compile_once_for_all_processes()
    for spec in json.load(open(sys.argv[1])):
        overrides = {k: tuple(v) if isinstance(v, list) else v
                     for k, v in spec["overrides"].items()}
        saved = dict(os.environ)
        os.environ.update(spec.get("env", {}))
        try:
            run_phase(apply_overrides(get_config(spec["phase"]), overrides))
        finally:
            os.environ.clear()
            os.environ.update(saved)
