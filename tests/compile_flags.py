"""XLA's cheap compile settings, for tests whose subprocesses spend most of their time
compiling small programs (tiny models, a few steps each).

LLVM at -O0 without its expensive passes roughly halves the compile time of these
programs while the steps run ~2x slower (measured: docs/multiprocess.md); runs that are
compared with each other are compiled alike, so what a test compares does not change.
JAX keys its compilation cache by XLA_FLAGS too, so these programs never mix with the
ones compiled at the default settings: a test whose programs the in-process tests reuse
from the session's cache must not use them (measured with the notebook: 329 -> 431 s, and
the tiny end-to-end test, which read the notebook's programs, 535 -> 648 s).
"""

from __future__ import annotations

CHEAP_COMPILE_FLAGS = ("--xla_backend_optimization_level=0 "
                       "--xla_llvm_disable_expensive_passes=true")


def with_cheap_compile(xla_flags: str | None) -> str:
    """XLA_FLAGS plus the cheap compile settings (the other flags kept)."""
    kept = [f for f in (xla_flags or "").split()
            if not f.startswith(("--xla_backend_optimization_level",
                                 "--xla_llvm_disable_expensive_passes"))]
    return " ".join(kept + CHEAP_COMPILE_FLAGS.split())
