"""Per-phase peak memory (what the planner is calibrated against) measures the phase only."""

import os

import numpy as np
import pytest

from sjjax.train import loop

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"),
                                reason="needs Linux /proc to reset the peak RSS")


def test_peak_of_a_phase_excludes_an_earlier_larger_peak():
    mib = 2 ** 20
    earlier = np.ones(512 * mib // 8)          # an earlier phase's 512 MiB peak
    del earlier
    start = loop.start_memory_measurement()
    phase = np.ones(128 * mib // 8)            # this phase allocates 128 MiB
    above = loop.memory_summary(start)["memory/peak_above_start_gib"] * 1024
    del phase
    assert 120 <= above <= 200, above
