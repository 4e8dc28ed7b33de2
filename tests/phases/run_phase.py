"""`python tests/phases/run_phase.py PHASE ROOT [key=value ...]`: runs a small phase
config in this process (used by tests that kill and restart a run)."""

import ast
import sys

from sjjax.phases import run_phase
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
    run_phase(small(phase, root, **overrides))
