"""Sharding by logical axis names, checked on 8 simulated CPU devices."""

from __future__ import annotations

import os
import subprocess
import sys

from jax.sharding import PartitionSpec as P

from sjjax import sharding
from tests.compile_flags import with_cheap_compile
from tests.conftest import ROOT


def run_on_8_devices(*args: str, timeout: int = 900) -> str:
    """Runs a script (and its arguments) in a fresh interpreter that sees 8 CPU devices,
    compiling with XLA's cheap settings (tests/compile_flags.py); returns its stdout."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
               XLA_FLAGS=with_cheap_compile("--xla_force_host_platform_device_count=8"))
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


def test_sharded_forward_equals_single_device():
    assert "OK" in run_on_8_devices("tests/multidevice_forward.py")


def test_logical_to_spec_rules():
    rules = sharding.DEFAULT_RULES
    # A mesh axis is used once per array: embed cannot reuse fsdp after batch took it.
    assert sharding.logical_to_spec(("batch", "embed"), rules) == P(("data", "fsdp"), None)
    assert sharding.logical_to_spec(("embed", "mlp"), rules) == P("fsdp", "tensor")
    assert sharding.logical_to_spec(("layers", "heads", "head_dim"), rules) == P(
        None, "tensor", None)
    custom = sharding.normalize_rules([("embed", ["data", "tensor"]), ("mlp", [])])
    assert sharding.logical_to_spec(("embed", "mlp"), custom) == P(("data", "tensor"), None)


def test_sharded_training_equals_single_device(tmp_path):
    out = run_on_8_devices("tests/phases/multidevice_training.py", str(tmp_path))
    assert "OK" in out, out
