"""The evaluation report: one Markdown file and PNG plots from a pipeline's run dirs.

    python -m sjjax.report runs/tiny          # -> runs/tiny/report/report.md + *.png

Reads `<root>/eval/<model>/eval.json` (written by the evaluate phase) and the
self-judge phases' metrics.jsonl, and draws:
- the comparison table (SFT, offline DPO, JSFT, Self-Judge iterations, + tournament),
  every judge accuracy beside the best question-blind rule on the same pairs (the bar);
- the judge table: each held-out set (labelled, shortcut-proof) with every rule;
- the N-sweep (quality, length and repetition against N: the paper's Figure 4), and
  the winner's accuracy per family and level;
- the per-iteration curve (the paper's Figure 5);
- the self-judge training curves, with the judge's agreement with the oracle on the
  policy's own pairs (what decides whether self-training helps) beside the best
  question-blind rule's on the same pairs.
"""

from __future__ import annotations

import json
import math
import os
import sys

MODEL_ORDER = ("base", "sft", "dpo", "jsft", "self_judge_1", "self_judge_2", "self_judge_3",
               "self_judge_oracle")
LABELS = {"base": "Base (before training)", "sft": "SFT", "dpo": "Offline DPO", "jsft": "JSFT",
          "self_judge_1": "Self-Judge (1 iter.)", "self_judge_2": "Self-Judge (2 iter.)",
          "self_judge_3": "Self-Judge (3 iter.)",
          "self_judge_oracle": "Control: iteration 1 with the oracle judge"}
CONTROL = "self_judge_oracle"  # the pipeline's oracle_control run: starts from JSFT too


def _iteration(name: str) -> bool:
    """self_judge_1, self_judge_2, ...: the chained iterations (not the control)."""
    return name.startswith("self_judge_") and name.rsplit("_", 1)[-1].isdigit()


def self_judge_runs(root: str) -> list[str]:
    """The self-judge run directories under root: the iterations, then the control."""
    return sorted(d for d in os.listdir(root) if _iteration(d) or d == CONTROL)


def _fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def load_evals(root: str) -> dict:
    evals = {}
    eval_dir = os.path.join(root, "eval")
    if not os.path.isdir(eval_dir):
        return evals
    names = sorted(os.listdir(eval_dir),
                   key=lambda n: MODEL_ORDER.index(n) if n in MODEL_ORDER else 99)
    for name in names:
        path = os.path.join(eval_dir, name, "eval.json")
        if os.path.exists(path):
            with open(path) as f:
                evals[name] = json.load(f)
    return evals


def comparison_rows(evals: dict) -> list[dict]:
    rows = []
    for name, ev in evals.items():
        g, j, w = ev.get("greedy", {}), ev.get("judge", {}), ev.get("win_rate", {})
        proof, own = ev.get("judge_shortcut_proof", {}), ev.get("judge_own_pairs", {})
        rows.append({"model": LABELS.get(name, name),
                     "oracle_accuracy": g.get("oracle_accuracy"),
                     "oracle_accuracy_sampled": ev.get("sampled", {}).get("oracle_accuracy"),
                     "judge_accuracy": j.get("accuracy"),
                     "judge_bar": j.get("baselines", {}).get("best"),
                     "judge_accuracy_shortcut_proof": proof.get("accuracy"),
                     "shortcut_proof_bar": proof.get("baselines", {}).get("best"),
                     "judge_accuracy_own_pairs": own.get("accuracy"),
                     "own_pairs_bar": own.get("baselines", {}).get("best"),
                     "own_pairs_n": own.get("n"),
                     "position_consistency": j.get("position_consistency"),
                     "win_rate": w.get("win_rate"),
                     "length_tokens": g.get("length_tokens"),
                     "repetition_4gram": g.get("repetition_4gram")})
        tour = ev.get("tournament", {})
        if tour:
            n = max(tour, key=int)
            t = tour[n]
            rows.append({"model": f"{LABELS.get(name, name)} + tournament N={n}",
                         "oracle_accuracy": t.get("oracle_accuracy"),
                         "length_tokens": t.get("length_tokens"),
                         "repetition_4gram": t.get("repetition_4gram")})
    return rows


_RULES = ("longer", "first_shown", "larger_number", "increasing_list",
          "reuses_question_numbers")


def judge_table(evals: dict) -> list[str]:
    """Per model and held-out set: the judge's accuracy beside each question-blind rule's
    on the same pairs and the best of them (the bar)."""
    lines = []
    for name, ev in evals.items():
        for key in ("judge", "judge_shortcut_proof", "judge_own_pairs"):
            j = ev.get(key)
            if not j or not j.get("baselines"):
                continue
            b = j["baselines"]
            lines.append(f"| {LABELS.get(name, name)} | {j.get('pairs', key)} | {j.get('n')} | "
                         f"{_fmt(j.get('accuracy'))} | {j.get('ties', '')} | "
                         + " | ".join(_fmt(b.get(r)) for r in _RULES)
                         + f" | {_fmt(b.get('best'))} ({b.get('best_rule')}) | "
                         f"{_fmt(b.get('best_either_way'))} ({b.get('best_either_way_rule')}) |")
    if not lines:
        return []
    head = ["## Judge accuracy and the question-blind bar", "",
            "Each rule judges the same held-out pairs without reading the question (ties "
            "count one half); a judge that does not beat the best of them (the bar) has "
            "learned a shortcut. A rule far below 0.5 is one too, reversed (\"shorter "
            "wins\"): the last column. The labelled pairs of the synthetic suite are "
            "shortcut-solvable; the shortcut-proof pairs are not.", "",
            "| model | pairs | n | judge | ties | " + " | ".join(r.replace("_", " ")
                                                          for r in _RULES)
            + " | bar | bar, rules reversed too |",
            "|" + "---|" * (7 + len(_RULES))]
    return head + lines + [""] + _check_table(evals)


def _check_table(evals: dict) -> list[str]:
    """A judge that writes its check before deciding: how often the check is the true
    one, and its accuracy where both orders' checks are right."""
    lines = [f"| {LABELS.get(name, name)} | {j.get('pairs', key)} | {_fmt(j['check_accuracy'])} "
             f"| {_fmt(j.get('accuracy_when_checks_right'))} | {_fmt(j.get('accuracy'))} |"
             for name, ev in evals.items()
             for key in ("judge", "judge_shortcut_proof", "judge_own_pairs")
             if (j := ev.get(key)) and j.get("check_accuracy") is not None]
    if not lines:
        return []
    return ["The judge writes its check of both responses before deciding: how often the "
            "written check is the true one (each order counted), and its accuracy where "
            "both orders' checks are right.", "",
            "| model | pairs | checks right | judge, both checks right | judge, all |",
            "|---|---|---|---|---|"] + lines + [""]


def sweep_tables(tour: dict) -> list[str]:
    """An N-sweep ({N: {metric: value}}) as Markdown: one row per N with its scalar
    metrics, then the winner's oracle accuracy per family:level stratum (rows) and N
    (columns), where the sweep has it."""
    ns = sorted(tour, key=int)
    keys = sorted({k for v in tour.values() for k, x in v.items() if not isinstance(x, dict)})
    lines = ["| N | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
             "|" + "---|" * (len(keys) + 1)]
    lines += [f"| {n} | " + " | ".join(_fmt(tour[n].get(k)) for k in keys) + " |"
              for n in ns]
    lines.append("")
    strata = sorted({s for v in tour.values() for s in v.get("oracle_accuracy_by_stratum", {})})
    if strata:
        lines += ["The winner's oracle accuracy per family:level:", "",
                  "| stratum | " + " | ".join(f"N={n}" for n in ns) + " |",
                  "|" + "---|" * (len(ns) + 1)]
        lines += [f"| {s} | " + " | ".join(
            _fmt(tour[n].get("oracle_accuracy_by_stratum", {}).get(s)) for n in ns) + " |"
            for s in strata]
        lines.append("")
    return lines


def _plot_sweep(tour: dict, path: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ns = sorted(int(n) for n in tour)
    keys = [k for k in ("oracle_accuracy", "length_tokens", "repetition_4gram")
            if k in tour[str(ns[0])]]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    axes = axes if len(keys) > 1 else [axes]
    for ax, key in zip(axes, keys):
        ax.plot(ns, [tour[str(n)][key] for n in ns], "o-", label="tournament winner")
        if key == "oracle_accuracy" and "oracle_best_of_n" in tour[str(ns[0])]:
            ax.plot(ns, [tour[str(n)]["oracle_best_of_n"] for n in ns], "s--", alpha=0.6,
                    label="oracle best-of-N")
            ax.legend(fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("N (candidates)")
        ax.set_title(key.replace("_", " "))
        ax.grid(alpha=0.3)
    fig.suptitle("Tournament self-rejection: N-sweep (cf. paper Fig. 4)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_iterations(evals: dict, path: str) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = ["jsft"] + [n for n in evals if _iteration(n)]
    names = [n for n in names if n in evals]
    if len(names) < 2:
        return False
    xs = list(range(len(names)))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for part, key, label in (("greedy", "oracle_accuracy", "oracle accuracy (greedy)"),
                             ("sampled", "oracle_accuracy", "oracle accuracy (sampled)"),
                             ("judge", "accuracy", "judge accuracy (held-out pairs)")):
        vals = [evals[n].get(part, {}).get(key) for n in names]
        if all(v is not None for v in vals):
            ax.plot(xs, vals, "o-", label=label)
    ax.set_xticks(xs, ["JSFT" if n == "jsft" else n.split("_")[-1] for n in names])
    ax.set_xlabel("self-judge iteration")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Iterative self-training (cf. paper Fig. 5)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


_BAR_KEY = "oracle/shortcut_agreement_best"


def _plot_training(root: str, path: str) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sjjax.metrics import read_metrics
    runs = self_judge_runs(root)
    keys = ("oracle/sample_accuracy", "oracle/judge_agreement", "judge/position_consistency",
            "rewards/margins")
    series = {r: read_metrics(os.path.join(root, r), "self_judge") for r in runs}
    if not any(series.values()):
        return False
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    offset = 0
    for run in runs:
        rows = series[run]
        start = 0 if run == CONTROL else offset  # the control starts where iteration 1 does
        for ax, key in zip(axes, keys):
            pts = [(r["step"] + start, r[key]) for r in rows
                   if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            if pts:
                line, = ax.plot(*zip(*pts), ".-", markersize=3, label=run)
                if key == "oracle/judge_agreement":  # the bar on the same own pairs
                    bar = [(r["step"] + start, r[_BAR_KEY]) for r in rows
                           if isinstance(r.get(_BAR_KEY), (int, float))
                           and math.isfinite(r[_BAR_KEY])]
                    if bar:
                        ax.plot(*zip(*bar), "--", color=line.get_color(), alpha=0.5,
                                label=f"{run}: best question-blind rule")
        if run != CONTROL:
            offset += rows[-1]["step"] if rows else 0
    for ax, key in zip(axes, keys):
        ax.set_title(key)
        if key == "oracle/judge_agreement":
            ax.legend(fontsize=6)
        ax.set_xlabel("self-judge step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def self_judge_summary(rows: list[dict], edge_steps: int = 5) -> dict:
    """One self-judge run's metrics rows -> its training summary.

    judge_agreement: the judge's agreement with the oracle on the policy's own
    informative pairs (exactly one response correct), pooled over steps by weighting
    each step with its share of informative pairs. sample_accuracy_first/last: the
    policy's oracle accuracy over the first and last `edge_steps` steps."""
    def mean(key, subset=None):
        vals = [r[key] for r in (rows if subset is None else subset)
                if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        return sum(vals) / len(vals) if vals else None
    weights = [(r.get("oracle/informative_pairs") or 0.0, r.get("oracle/judge_agreement"))
               for r in rows]
    weights = [(w, a) for w, a in weights
               if w > 0 and isinstance(a, (int, float)) and math.isfinite(a)]
    total = sum(w for w, _ in weights)

    def pooled(key):  # weighted by each step's share of informative pairs, like the judge's
        pairs = [(r.get("oracle/informative_pairs") or 0.0, r.get(key)) for r in rows]
        pairs = [(w, a) for w, a in pairs
                 if w > 0 and isinstance(a, (int, float)) and math.isfinite(a)]
        t = sum(w for w, _ in pairs)
        return sum(w * a for w, a in pairs) / t if t else None
    return {"steps": len(rows),
            "identical_pairs": mean("pairs/identical"),
            "informative_pairs": mean("oracle/informative_pairs"),
            "judge_agreement": sum(w * a for w, a in weights) / total if total else None,
            "shortcut_agreement_best": pooled("oracle/shortcut_agreement_best"),
            "judge_shortcut_agreement": pooled("oracle/judge_shortcut_agreement"),
            "position_consistency": mean("judge/position_consistency"),
            "sample_accuracy_first": mean("oracle/sample_accuracy", rows[:edge_steps]),
            "sample_accuracy_last": mean("oracle/sample_accuracy", rows[-edge_steps:])}


def _training_table(root: str) -> list[str]:
    from sjjax.metrics import read_metrics
    runs = self_judge_runs(root)
    summaries = {r: self_judge_summary(read_metrics(os.path.join(root, r), "self_judge"))
                 for r in runs}
    summaries = {r: s for r, s in summaries.items() if s["steps"]}
    if not summaries:
        return []
    cols = ("steps", "identical_pairs", "informative_pairs", "judge_agreement",
            "shortcut_agreement_best", "judge_shortcut_agreement",
            "position_consistency", "sample_accuracy_first", "sample_accuracy_last")
    lines = ["| run | " + " | ".join(c.replace("_", " ") for c in cols) + " |",
             "|" + "---|" * (len(cols) + 1)]
    lines += [f"| {LABELS.get(r, r)} | " + " | ".join(_fmt(s[c]) for c in cols) + " |"
              for r, s in summaries.items()]
    return lines + [""]


def write_report(root: str) -> str:
    """Writes <root>/report/report.md (+ PNGs); returns the Markdown path."""
    out_dir = os.path.join(root, "report")
    os.makedirs(out_dir, exist_ok=True)
    evals = load_evals(root)
    lines = [f"# Self-Judge report: `{root}`", ""]
    cols = ("model", "oracle_accuracy", "oracle_accuracy_sampled", "judge_accuracy",
            "position_consistency", "judge_bar", "judge_accuracy_shortcut_proof",
            "shortcut_proof_bar", "judge_accuracy_own_pairs", "own_pairs_bar", "own_pairs_n",
            "win_rate",
            "length_tokens", "repetition_4gram")
    rows = comparison_rows(evals)
    if rows:
        lines += ["| " + " | ".join(c.replace("_", " ") for c in cols) + " |",
                  "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
        lines.append("")
    lines += judge_table(evals)
    for sweep_model in [n for n, e in evals.items() if e.get("tournament")]:
        png = f"n_sweep_{sweep_model}.png"
        _plot_sweep(evals[sweep_model]["tournament"], os.path.join(out_dir, png))
        lines += [f"## Tournament N-sweep ({LABELS.get(sweep_model, sweep_model)})", "",
                  f"![N-sweep]({png})", ""]
        lines += sweep_tables(evals[sweep_model]["tournament"])
    if _plot_iterations(evals, os.path.join(out_dir, "iterations.png")):
        lines += ["## Iterations", "", "![iterations](iterations.png)", ""]
    if os.path.isdir(root) and _plot_training(root, os.path.join(out_dir, "self_judge.png")):
        lines += ["## Self-judge training", "",
                  "The judge's agreement with the oracle on the policy's own informative "
                  "pairs (exactly one response correct) decides whether self-training helps.",
                  "", "![self-judge](self_judge.png)", ""] + _training_table(root)
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


if __name__ == "__main__":
    print(write_report(sys.argv[1] if len(sys.argv) > 1 else "runs/tiny"))
