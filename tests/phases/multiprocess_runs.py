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

if __name__ == "__main__":
    distributed.initialize_from_env()
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
