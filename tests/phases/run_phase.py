"""`python tests/phases/run_phase.py PHASE ROOT [key=value ...]`: runs a small phase
config in this process (used by tests that kill, stop and restart a run). Like
`sjjax.main`, a stopped run (SIGTERM/SIGINT) prints where it saved and exits 0."""

import ast
import sys

from sjjax.phases import run_phase
from sjjax.train.trainer import Preempted
from tests.phases.tiny_config import small

if __name__ == "__main__":
    phase, root, *pairs = sys.argv[1:]
    overrides = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    try:
        run_phase(small(phase, root, **overrides))
    except Preempted as stopped:
        print(f"sjjax: {stopped}", file=sys.stderr, flush=True)
        sys.exit(0)
