"""The default pipeline over several seeds: one row per figure, each seed's value, the
mean and the range (min-max), beside the question-blind bar it must clear.

    for s in 0 1 2; do python -m sjjax.main --config=configs/pipeline.py \\
        --config.seed=$s --config.root=runs/tiny_seed$s; done
    python bench/pipeline_seeds.py runs/tiny_seed0 runs/tiny_seed1 runs/tiny_seed2 \\
        [--json seeds.json]

Reads what `sjjax.report` reads (each root's eval/<model>/eval.json and the self-judge
phases' metrics.jsonl) and prints a Markdown table: the issue's figures (judge accuracy
on its own informative pairs and the best rule on the same pairs, shortcut-proof
held-out accuracy and its bars, greedy accuracy JSFT -> self-judge iterations, the
tournament winner at N=1 and the largest N) as mean and range over the roots.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def figures(root: str) -> dict:
    """One pipeline root -> {figure: value} (absent figures left out)."""
    from sjjax.metrics import read_metrics
    from sjjax.report import load_evals, self_judge_runs, self_judge_summary
    evals = load_evals(root)
    out = {}

    def put(key, value):
        if isinstance(value, (int, float)):
            out[key] = float(value)

    for name, ev in evals.items():
        put(f"{name}: greedy accuracy", ev.get("greedy", {}).get("oracle_accuracy"))
        put(f"{name}: sampled accuracy", ev.get("sampled", {}).get("oracle_accuracy"))
    jsft = evals.get("jsft", {})
    for key, label in (("judge", "labelled"), ("judge_shortcut_proof", "shortcut-proof"),
                       ("judge_own_pairs", "own informative pairs")):
        j = jsft.get(key, {})
        put(f"jsft judge, {label}", j.get("accuracy"))
        put(f"jsft judge, {label}: bar", j.get("baselines", {}).get("best"))
        put(f"jsft judge, {label}: bar, rules reversed too",
            j.get("baselines", {}).get("best_either_way"))
        if key == "judge_own_pairs":
            put(f"jsft judge, {label}: n", j.get("n"))
    for run in self_judge_runs(root):
        s = self_judge_summary(read_metrics(os.path.join(root, run), "self_judge"))
        if s["steps"]:
            put(f"{run} training: judge agreement on own pairs", s["judge_agreement"])
            put(f"{run} training: best rule's agreement", s["shortcut_agreement_best"])
            put(f"{run} training: informative pairs", s["informative_pairs"])
    tour = jsft.get("tournament", {})
    if tour:
        ns = sorted(tour, key=int)
        put("jsft tournament N=1", tour[ns[0]].get("oracle_accuracy"))
        put(f"jsft tournament N={ns[-1]}", tour[ns[-1]].get("oracle_accuracy"))
        put(f"jsft oracle best-of-{ns[-1]}", tour[ns[-1]].get("oracle_best_of_n"))
    return out


def summarise(per_root: list[dict]) -> dict:
    """{figure: {"values": [...], "mean", "min", "max"}} over the figures every root has."""
    keys = [k for k in per_root[0] if all(k in f for f in per_root)]
    out = {}
    for k in keys:
        vals = [f[k] for f in per_root]
        out[k] = {"values": vals, "mean": sum(vals) / len(vals), "min": min(vals),
                  "max": max(vals)}
    return out


def markdown(summary: dict, roots: list[str]) -> str:
    lines = ["| figure | " + " | ".join(roots) + " | mean | range |",
             "|" + "---|" * (len(roots) + 3)]
    for k, s in summary.items():
        fmt = (lambda v: f"{v:.0f}") if k.endswith(": n") else (lambda v: f"{v:.3f}")
        lines.append(f"| {k} | " + " | ".join(fmt(v) for v in s["values"])
                     + f" | **{s['mean']:.3f}** | {fmt(s['min'])}-{fmt(s['max'])} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("roots", nargs="+", help="pipeline roots (config.root), one per seed")
    p.add_argument("--json", help="also write the summary here")
    args = p.parse_args(argv)
    for root in args.roots:
        if not os.path.isdir(os.path.join(root, "eval")):
            p.error(f"{root}: no eval/ directory (run configs/pipeline.py there first)")
    summary = summarise([figures(r) for r in args.roots])
    print(markdown(summary, args.roots))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"roots": args.roots, "figures": summary}, f, indent=2)


if __name__ == "__main__":
    main()
