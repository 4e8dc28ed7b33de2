"""The planner against measured memory: for each finished training run directory, the
planner's per-device peak for the run's resolved config (at the longest batch the run
compiled for) next to the peak resident memory the run measured above its start.

    python bench/plan_vs_measured.py runs/tiny/sft runs/tiny/jsft runs/smollm2/jsft ...

On CPU, "measured" is the high-water mark of the process's resident memory during the
phase minus its resident memory when the phase started (`memory/peak_above_start_gib`
in final/meta.json), so it includes what the planner does not model: XLA's temporaries,
the compiled programs and the host data pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sjjax.config import load_resolved  # noqa: E402
from sjjax.plan import GIB, plan_config  # noqa: E402


def compare(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "final", "meta.json")) as f:
        summary = json.load(f)["summary"]
    config = load_resolved(run_dir)
    length = summary.get("max_batch_length") or config.data.max_length
    config.plan = {"seq_len": int(length)}
    plan = plan_config(config)
    measured = summary["memory/peak_above_start_gib"]
    training_peak = plan.totals["training_peak"]
    return {"run": run_dir, "phase": config.phase, "batch": config.data.batch_size,
            "length": int(length), "plan_gib": training_peak / GIB,
            "measured_gib": measured, "ratio": training_peak / GIB / measured}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = [compare(d) for d in args.run_dirs]
    print("| run | phase | batch x length | plan GiB | measured GiB | plan / measured |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['run']} | {r['phase']} | {r['batch']} x {r['length']} | "
              f"{r['plan_gib']:.2f} | {r['measured_gib']:.2f} | {r['ratio']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
