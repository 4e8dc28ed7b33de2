"""Per-phase peak memory (what the planner is calibrated against) measures the phase only."""

import os

import numpy as np
import pytest

from sjjax.train.memory import PeakMemory

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"),
                                reason="needs Linux /proc to reset the peak RSS")
MIB = 2 ** 20


def _above_mib(memory):
    return memory.summary()["memory/peak_above_start_gib"] * 1024


def test_peak_of_a_phase_excludes_an_earlier_larger_peak():
    earlier = np.ones(512 * MIB // 8)          # an earlier phase's 512 MiB peak
    del earlier
    memory = PeakMemory()
    phase = np.ones(128 * MIB // 8)            # this phase allocates 128 MiB
    above = _above_mib(memory)
    del phase
    assert 120 <= above <= 200, above


def test_excluded_spans_do_not_count_but_the_rest_does():
    memory = PeakMemory()
    kept = np.ones(64 * MIB // 8)              # before the excluded span: counts
    with memory.excluded():
        transient = np.ones(512 * MIB // 8)    # e.g. XLA compiling: does not count
        del transient
    assert 60 <= _above_mib(memory) <= 140
    later = np.ones(256 * MIB // 8)            # after it: counts
    assert 300 <= _above_mib(memory) <= 400
    del kept, later
