"""The oracle controls: how good must the judge be before on-policy self-training helps?

From a trained JSFT run directory, runs the self-judge phase (the tiny preset's settings)
with the judge in {oracle, oracle_noisy p=0.1..0.5, reference} for several seeds, and
measures for each run
- the judge's agreement with the oracle on the policy's own informative pairs (pooled
  over the run's steps, as the report does), beside the best question-blind rule's on
  the same pairs;
- the policy's oracle accuracy on held-out prompts before (the JSFT model) and after,
  greedy and sampled (4 replies each at the preset's sampling settings), and the gains;
  with --train-prompts N, the same on N stratified *training* prompts (those the loop
  samples), which tells a loop that fails to fit from one that fits and does not
  generalise.
Writes OUT/oracle_controls.json and OUT/oracle_controls.png (greedy- and sampled-accuracy
gain against judge agreement: one point per run, the reference judge's runs marked apart).

    python bench/oracle_controls.py --jsft runs/tiny/jsft --out runs/tiny/controls \\
        --seeds 0 1 2 --steps 40 --flips 0.1 0.2 0.3 0.4 0.5 --prompts 128

Each run is one self-judge phase (about a minute per 10 steps of the tiny preset on 2 CPU
cores); a finished run is reused when the command is repeated.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _prompts(config, n: int, seed: int, split: str = "heldout"):
    from sjjax.data.sources import load_prompts
    from sjjax.evaluation import stratified_prompts
    return stratified_prompts(load_prompts(config, split=split), n, seed)


SAMPLES = 4  # sampled replies per held-out prompt (the preset's sampling settings)


def policy_accuracy(config, source: str, prompts) -> dict:
    """Oracle accuracy of the policy at `source` on `prompts`: greedy and sampled
    (SAMPLES replies each), overall and per family:level."""
    import jax
    from sjjax.data.sources import load_oracle
    from sjjax.evaluation import greedy_quality, sampled_quality
    from sjjax.generation import Responder
    from sjjax.phases.common import load_policy, sampling_params
    c = config.copy_and_resolve_references()
    c.model.source = source
    policy = load_policy(c)
    responder = Responder.from_config(policy, c.sampling)
    weights = dict(policy_params=policy.params, policy_lora=policy.lora)
    greedy = greedy_quality(responder, prompts, jax.random.key(0), load_oracle(c), **weights)
    sampled = sampled_quality(responder, prompts, jax.random.key(1), load_oracle(c),
                              sampling_params(c.sampling), SAMPLES, **weights)
    return {"greedy": greedy["oracle_accuracy"], "sampled": sampled["oracle_accuracy"],
            "greedy_by_stratum": greedy.get("oracle_accuracy_by_stratum"),
            "sampled_by_stratum": sampled.get("oracle_accuracy_by_stratum")}


def run_one(args, judge: str, flip: float, seed: int, prompts, base: dict,
            train_prompts=None, train_base=None) -> dict:
    from sjjax import presets
    from sjjax.checkpoint import has_final
    from sjjax.metrics import read_metrics
    from sjjax.phases import run_phase
    from sjjax.report import self_judge_summary
    name = f"{judge}{'_p' + str(flip) if judge == 'oracle_noisy' else ''}_seed{seed}"
    name = f"{args.tag}_{name}" if args.tag else name
    c = presets.make("self_judge", args.preset)
    c.model.source = args.jsft
    c.run_dir = os.path.join(args.out, name)
    c.seed = seed
    c.self_judge.judge = judge
    c.self_judge.oracle_flip = flip
    c.self_judge.steps = args.steps
    c.log.progress = False
    c.log.tensorboard = False
    for key, value in args.set:
        set_key(c, key, value)
    if not has_final(c.run_dir):
        run_phase(c)
    summary = self_judge_summary(read_metrics(c.run_dir, "self_judge"))
    # Measured at the preset's settings (sampling included), whatever the run overrode.
    preset = presets.make("self_judge", args.preset)
    after = policy_accuracy(preset, c.run_dir, prompts)
    train = {}
    if train_prompts:  # the prompts it trained on: did the loop fit them?
        t = policy_accuracy(preset, c.run_dir, train_prompts)
        train = {"train_greedy_before": train_base["greedy"], "train_greedy_after": t["greedy"],
                 "train_gain": t["greedy"] - train_base["greedy"],
                 "train_sampled_before": train_base["sampled"],
                 "train_sampled_after": t["sampled"],
                 "train_sampled_gain": t["sampled"] - train_base["sampled"]}
    return {**train, "run": name, "judge": judge, "flip": flip, "seed": seed,
            "judge_agreement": summary["judge_agreement"],
            "shortcut_agreement_best": summary["shortcut_agreement_best"],
            "informative_pairs": summary["informative_pairs"],
            "greedy_before": base["greedy"], "greedy_after": after["greedy"],
            "gain": after["greedy"] - base["greedy"],
            "sampled_before": base["sampled"], "sampled_after": after["sampled"],
            "sampled_gain": after["sampled"] - base["sampled"],
            "greedy_by_stratum": after["greedy_by_stratum"],
            "sampled_by_stratum": after["sampled_by_stratum"]}


def set_key(config, key: str, text: str) -> None:
    """config.<dotted key> = the value `text` spells (a Python literal, else a string);
    a number in the key indexes a sequence: data.sources.0.n_prompts=2048."""
    import ast
    node = config
    *path, last = key.split(".")
    for part in path:
        node = node[int(part)] if isinstance(node, (list, tuple)) else node[part]
    try:
        node[last] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        node[last] = text


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected key=value")
    return key, value


def plot(rows, path: str) -> None:
    """Two panels, greedy and sampled accuracy gain against the judge's agreement with the
    oracle on the policy's own informative pairs: one point per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, gain, label in ((axes[0], "gain", "greedy"), (axes[1], "sampled_gain", "sampled")):
        for judge, marker in (("oracle", "o"), ("oracle_noisy", "o"), ("reference", "*")):
            pts = [(r["judge_agreement"], r[gain]) for r in rows if r["judge"] == judge
                   and r["judge_agreement"] is not None and math.isfinite(r["judge_agreement"])]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, s=80 if marker == "*" else 30,
                           label="self-judge (reference)" if judge == "reference" else
                           "oracle controls" if judge == "oracle" else None,
                           color="C1" if judge == "reference" else "C0")
        ax.axhline(0, color="gray", lw=0.5)
        ax.axvline(0.5, color="gray", lw=0.5, ls=":")
        ax.set_xlabel("judge agreement with the oracle (own informative pairs)")
        ax.set_ylabel(f"{label} oracle accuracy gain (held-out)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jsft", required=True, help="the JSFT run directory (policy/reference)")
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--flips", type=float, nargs="*", default=[0.1, 0.2, 0.3, 0.4, 0.5])
    p.add_argument("--judges", nargs="+", default=["oracle", "oracle_noisy", "reference"])
    p.add_argument("--prompts", type=int, default=128, help="held-out prompts for greedy")
    p.add_argument("--train-prompts", type=int, default=0,
                   help="also measure on this many stratified training prompts (the ones "
                        "self-training samples: it tells fitting from generalising)")
    p.add_argument("--set", type=key_value, nargs="*", default=[], metavar="KEY=VALUE",
                   help="self-judge config overrides, e.g. train.learning_rate=5e-4")
    p.add_argument("--tag", default="", help="a prefix of the run names (for --set sweeps)")
    args = p.parse_args(argv)
    from sjjax import presets
    os.makedirs(args.out, exist_ok=True)
    config = presets.make("self_judge", args.preset)
    prompts = _prompts(config, args.prompts, 0)
    base = policy_accuracy(config, args.jsft, prompts)
    train_prompts = (_prompts(config, args.train_prompts, 0, "train")
                     if args.train_prompts else None)
    train_base = policy_accuracy(config, args.jsft, train_prompts) if train_prompts else None
    print(f"JSFT oracle accuracy on {len(prompts)} held-out prompts: greedy "
          f"{base['greedy']:.3f}, sampled {base['sampled']:.3f} ({SAMPLES} each)", flush=True)
    runs = [(j, f) for j in args.judges
            for f in (args.flips if j == "oracle_noisy" else [0.0])]
    rows = [run_one(args, j, f, s, prompts, base, train_prompts, train_base)
            for j, f in runs for s in args.seeds]
    result = {"jsft": args.jsft, "greedy_jsft": base["greedy"],
              "sampled_jsft": base["sampled"],
              "greedy_jsft_by_stratum": base["greedy_by_stratum"],
              "sampled_jsft_by_stratum": base["sampled_by_stratum"], "steps": args.steps,
              "overrides": dict(args.set),
              "prompts": len(prompts), "runs": rows}
    if train_base:
        result.update(train_prompts=len(train_prompts), greedy_jsft_train=train_base["greedy"],
                      sampled_jsft_train=train_base["sampled"])
    stem = f"oracle_controls{'_' + args.tag if args.tag else ''}"
    with open(os.path.join(args.out, stem + ".json"), "w") as f:
        json.dump(result, f, indent=2)
    plot(rows, os.path.join(args.out, stem + ".png"))
    for r in rows:
        print(f"{r['run']:28s} agreement {r['judge_agreement']} (best shortcut "
              f"{r['shortcut_agreement_best']}) greedy {r['greedy_before']:.3f} -> "
              f"{r['greedy_after']:.3f}, sampled {r['sampled_before']:.3f} -> "
              f"{r['sampled_after']:.3f}" + (
                  f"; training prompts greedy {r['train_greedy_before']:.3f} -> "
                  f"{r['train_greedy_after']:.3f}" if "train_gain" in r else ""), flush=True)
    return result


if __name__ == "__main__":
    main()
