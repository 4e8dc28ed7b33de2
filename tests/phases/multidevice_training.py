"""Run with 8 CPU devices: 3 steps of JSFT and of self-judge on a (data=2, fsdp=2,
tensor=2) mesh log the same losses (to 1e-5) as on one device."""

import json
import os
import sys

import jax
import numpy as np

from sjjax.phases import run_phase
from tests.phases.tiny_config import small

assert jax.device_count() == 8
root = sys.argv[1]


def losses(run_dir, phase):
    rows = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
    return np.array([r["loss"] for r in rows if r["phase"] == phase])


for phase, extra in (("jsft", {"train.steps": 3}),
                     ("self_judge", {"self_judge.steps": 3, "model.source": "tiny"})):
    results = {}
    for name, shape in (("one", (1, 1, 1)), ("mesh", (2, 2, 2))):
        c = small(phase, f"{root}/{name}", **extra, **{"mesh.shape": shape,
                                                        "log.every_steps": 1})
        run_phase(c)
        results[name] = losses(c.run_dir, phase)
    assert len(results["one"]) == 3, results
    err = np.abs(results["one"] - results["mesh"]).max()
    assert err < 1e-5, (phase, results)
    print(f"{phase}: losses {results['one'].tolist()} max diff {err:.2e}")
print("OK")
