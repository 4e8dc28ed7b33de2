"""The tournament's oracle controls: winner accuracy against N when the judge is the task
oracle, flipped with probability p, beside the model's own judge.

Reads a tournament run directory (`configs/tournament.py`: `responses.jsonl` holds, per
prompt, the N_max candidates and the oracle's verdict on each; `tournament.json` the
model judge's sweep) and replays the same brackets (`sjjax.tournament.run_tournament`,
the first N candidates, bracket key fold_in(key(seed), N) as the sweep draws it) with a
noisy oracle as judge: where exactly one of the two candidates is right the right one
wins, flipped with probability p; where both are right or both wrong a fair coin decides.
No model runs: the candidates are the policy's, only the judge changes.

    python bench/tournament_controls.py runs/tiny/tournament --flips 0 0.1 0.2 0.3 0.4 0.5 \\
        --seeds 0 1 2 --out runs/tiny/tournament_controls

Writes OUT/tournament_controls.json and OUT/tournament_controls.png (winner accuracy
against N: one line per p, the model judge's sweep and the oracle's best of N).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_candidates(run_dir: str) -> np.ndarray:
    """-> oracle verdicts [prompts, N_max] (0/1) of a tournament run's candidates."""
    path = os.path.join(run_dir, "responses.jsonl")
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    if not rows or "oracle" not in rows[0]:
        raise SystemExit(f"{path}: no oracle verdicts (a tournament on the synthetic suite "
                         f"writes them)")
    return np.asarray([r["oracle"] for r in rows], np.float64)


def noisy_oracle_winner_accuracy(right: np.ndarray, n: int, flip: float, seed: int,
                                 bracket_seed: int = 0) -> float:
    """Winner accuracy of single elimination over the first n candidates of each prompt
    (right [prompts, N_max]) judged by the oracle flipped with probability `flip`."""
    import jax

    from sjjax.tournament import run_tournament
    rng = np.random.default_rng([seed, n, int(round(flip * 1000)), 0x70C])

    def judge(matches):
        a = np.asarray([right[p, i] for p, i, _ in matches])
        b = np.asarray([right[p, j] for p, _, j in matches])
        coin = rng.random(len(matches)) < 0.5
        flipped = rng.random(len(matches)) < flip
        return np.where(a != b, (a > b) ^ flipped, coin)

    key = jax.random.fold_in(jax.random.key(bracket_seed), n)
    result = run_tournament(key, n, judge, len(right))
    return float(right[np.arange(len(right)), result.winners].mean())


def controls(run_dir: str, flips, seeds, sizes=None) -> dict:
    right = read_candidates(run_dir)
    sizes = sizes or [n for n in (1, 2, 4, 8, 16, 32) if n <= right.shape[1]]
    with open(os.path.join(run_dir, "tournament.json")) as f:
        model = {int(n): q for n, q in json.load(f).items()}
    with open(os.path.join(run_dir, "config.json")) as f:
        bracket_seed = int(json.load(f).get("seed", 0))
    curves = {}
    for p in flips:
        runs = [[noisy_oracle_winner_accuracy(right, n, p, s, bracket_seed) for n in sizes]
                for s in seeds]
        curves[str(p)] = {"mean": np.mean(runs, 0).tolist(), "min": np.min(runs, 0).tolist(),
                          "max": np.max(runs, 0).tolist()}
    return {"run_dir": run_dir, "prompts": len(right), "sizes": sizes, "seeds": list(seeds),
            "noisy_oracle": curves,
            "model_judge": [model[n]["oracle_accuracy"] for n in sizes if n in model],
            "oracle_best_of_n": [float(right[:, :n].max(1).mean()) for n in sizes]}


def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 4))
    sizes = result["sizes"]
    for i, (p, c) in enumerate(result["noisy_oracle"].items()):
        ax.plot(sizes, c["mean"], marker="o", ms=3, color=plt.cm.viridis(i / 6),
                label=f"oracle, flip p={p}")
        ax.fill_between(sizes, c["min"], c["max"], color=plt.cm.viridis(i / 6), alpha=0.15)
    ax.plot(sizes[:len(result["model_judge"])], result["model_judge"], marker="*", ms=9,
            color="C3", label="the model's own judge")
    ax.plot(sizes, result["oracle_best_of_n"], ls="--", color="gray", label="oracle best of N")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("candidates N")
    ax.set_ylabel("winner oracle accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", help="a tournament run directory (responses.jsonl)")
    p.add_argument("--out", default=None, help="default: RUN_DIR/../tournament_controls")
    p.add_argument("--flips", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args(argv)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.run_dir)),
                                   "tournament_controls")
    os.makedirs(out, exist_ok=True)
    result = controls(args.run_dir, args.flips, args.seeds)
    with open(os.path.join(out, "tournament_controls.json"), "w") as f:
        json.dump(result, f, indent=2)
    plot(result, os.path.join(out, "tournament_controls.png"))
    print("N:            " + " ".join(f"{n:6d}" for n in result["sizes"]))
    for p_, c in result["noisy_oracle"].items():
        print(f"oracle p={p_:4s}  " + " ".join(f"{v:6.3f}" for v in c["mean"]))
    print("model judge:  " + " ".join(f"{v:6.3f}" for v in result["model_judge"]))
    print("best of N:    " + " ".join(f"{v:6.3f}" for v in result["oracle_best_of_n"]))
    return result


if __name__ == "__main__":
    main()
