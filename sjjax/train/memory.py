"""A phase's peak resident memory, measured from Linux's /proc, and the device memory
XLA plans for its compiled steps (the figures `sjjax.plan` estimates)."""

from __future__ import annotations

import contextlib
import os


def current_rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def reset_peak_rss() -> None:
    """Restarts the kernel's high-water mark of this process's resident memory (Linux:
    writing 5 to /proc/self/clear_refs), so that a phase run after another in the same
    process (the pipeline) measures its own peak. A no-op where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes() -> int:
    """The process's peak resident memory since the last `reset_peak_rss` (VmHWM), or
    since it started where /proc is unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """A phase's peak resident memory above the process's memory when it started, with
    spans marked `excluded()` left out: XLA compilation is host work that `sjjax.plan`
    does not model (on an accelerator it never touches device memory), and on CPU the
    compiler's transient memory would otherwise decide the peak of a small model.

    Create it when the phase starts, before any weights are loaded."""

    def __init__(self):
        reset_peak_rss()
        self.start = current_rss_bytes()
        self.peak = self.start
        self.xla_peak = 0

    def add_compiled(self, compiled) -> None:
        """Notes a compiled step's device memory as XLA's buffer assignment plans it
        (arguments + outputs + temporaries - donated aliases, per device): the exact
        figure `sjjax.plan` estimates, where no device reports measured memory (CPU)."""
        try:
            m = compiled.memory_analysis()
            total = (m.argument_size_in_bytes + m.output_size_in_bytes
                     + m.temp_size_in_bytes - m.alias_size_in_bytes)
        except (AttributeError, NotImplementedError, TypeError):
            return
        self.xla_peak = max(self.xla_peak, int(total))

    @contextlib.contextmanager
    def excluded(self):
        self.peak = max(self.peak, peak_rss_bytes())
        try:
            yield
        finally:
            reset_peak_rss()  # the high-water mark restarts from the memory now

    def summary(self) -> dict:
        peak = max(self.peak, peak_rss_bytes())
        out = {"memory/peak_rss_gib": peak / 2 ** 30,
               "memory/peak_above_start_gib": max(peak - self.start, 0) / 2 ** 30}
        if self.xla_peak:
            out["memory/xla_step_gib"] = self.xla_peak / 2 ** 30
        return out
