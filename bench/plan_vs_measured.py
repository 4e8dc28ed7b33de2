"""The planner against measured memory: for each finished training run directory, the
planner's per-device peak for the run's resolved config (at the longest batch the run
compiled for) next to the peak resident memory the run measured above its start.

    python bench/plan_vs_measured.py runs/tiny/sft runs/tiny/jsft runs/smollm2/jsft ...

"XLA step" is the compiled training step's device memory as XLA's buffer assignment
plans it (arguments + outputs + temporaries - donated aliases) for the longest bucket:
the quantity the planner estimates, exact for the program, and what a TPU or GPU must
hold. On CPU, "peak RSS" is the high-water mark of the process's resident memory during the
phase minus its resident memory when the phase started (`memory/peak_above_start_gib`
in final/meta.json, XLA compilation excluded), so it also holds what the planner does not
model: the allocator keeping freed buffers of the other length buckets, the XLA runtime,
the checkpointer and the host data pipeline.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sjjax.config import load_resolved  # noqa: E402
from sjjax.data.batching import bucket_of  # noqa: E402
from sjjax.data.datasets import load_prepared  # noqa: E402
from sjjax.plan import GIB, plan_config  # noqa: E402


def longest_bucket(config) -> int | None:
    """The bucket of the run's longest example, from its built dataset (for runs whose
    summary predates `max_batch_length`); None where the dataset is not unique."""
    mode = {"sft": "sft", "jsft": "jsft", "dpo": "dpo"}.get(config.phase)
    found = glob.glob(os.path.join(config.data.tfds_dir, "sjjax_examples", f"{mode}_*", "*"))
    if not mode or len(found) != 1:
        return None
    lengths = load_prepared(found[0]).lengths
    buckets = list(config.data.buckets)
    return int(buckets[bucket_of(np.asarray([lengths.max()]), buckets)[0]])


def compare(run_dir: str, runtime_overhead_gib: float) -> dict:
    with open(os.path.join(run_dir, "final", "meta.json")) as f:
        summary = json.load(f)["summary"]
    config = load_resolved(run_dir)
    length = (summary.get("max_batch_length") or longest_bucket(config)
              or config.data.max_length)
    config.plan = {"seq_len": int(length)}
    training_peak = plan_config(config).totals["training_peak"] / GIB
    config.plan.runtime_overhead_gib = runtime_overhead_gib
    host_peak = plan_config(config).totals["training_peak"] / GIB
    measured = summary["memory/peak_above_start_gib"]
    xla = summary.get("memory/xla_step_gib")
    return {"run": run_dir, "phase": config.phase, "batch": config.data.batch_size,
            "length": int(length), "plan_gib": training_peak, "xla_gib": xla,
            "plan_over_xla": training_peak / xla if xla else None,
            "host_plan_gib": host_peak, "measured_gib": measured,
            "host_plan_over_measured": host_peak / measured}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--runtime-overhead-gib", type=float, default=0.5,
                        help="plan.runtime_overhead_gib for the host-memory comparison")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = [compare(d, args.runtime_overhead_gib) for d in args.run_dirs]
    print(f"| run | phase | batch x length | plan GiB | XLA step GiB | plan / XLA | plan + "
          f"{args.runtime_overhead_gib:g} GiB runtime | peak RSS above start GiB | "
          f"(plan + runtime) / RSS |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        xla = (f"{r['xla_gib']:.2f} | {r['plan_over_xla']:.2f}" if r["xla_gib"]
               else "– | –")
        print(f"| {r['run']} | {r['phase']} | {r['batch']} x {r['length']} | "
              f"{r['plan_gib']:.2f} | {xla} | {r['host_plan_gib']:.2f} | "
              f"{r['measured_gib']:.2f} | {r['host_plan_over_measured']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
