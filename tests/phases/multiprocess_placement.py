"""Run as 2 processes x 4 devices (test_multiprocess.py): `batch_to_device` assembles
the same global batch on every mesh from this host's rows (JSFT) and from the whole
batch every process holds (self-judge, whole=True), and the gathered values are the
single-process ones. Prints OK."""

import numpy as np

from sjjax import distributed

distributed.initialize_from_env()

import jax  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from sjjax import sharding  # noqa: E402
from sjjax.train.placement import batch_to_device  # noqa: E402

assert jax.process_count() == 2 and jax.device_count() == 8
p = jax.process_index()
rows = np.arange(2 * 16 * 3, dtype=np.int32).reshape(2, 16, 3)  # [A, B, T], global
for shape in ((8, 1, 1), (2, 4, 1), (1, 8, 1)):
    mesh = sharding.make_mesh(shape)
    rules = sharding.DEFAULT_RULES
    local = batch_to_device({"x": rows[:, 8 * p:8 * (p + 1)]}, mesh, rules)["x"]
    whole = batch_to_device({"x": rows}, mesh, rules, whole=True)["x"]
    for array in (local, whole):
        assert array.shape == rows.shape, (shape, array.shape)
        np.testing.assert_array_equal(multihost_utils.process_allgather(array, tiled=True),
                                      rows)
print("OK", flush=True)
