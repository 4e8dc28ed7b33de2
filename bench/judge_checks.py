"""Where does a judge that checks, then decides (the tiny_check preset), go wrong?

For a tiny-suite model trained with `configs/jsft_own_errors.py:<run>,check`: samples its
own replies to stratified prompts (the preset's sampling, `--samples` per prompt), keeps
the informative pairs (exactly one reply right), shows the right reply on a seeded random
side and lets the judge write its checks and decide, in both orders (`sjjax.judge`).
Measures, on the same pairs,
- the judge's accuracy (both orders' scores, as every phase uses it), its position
  consistency, and the best question-blind rule beside it;
- each written check line against the oracle's (`synthetic.explain`), by the kind of
  the true check ("N is not in the question.", "N is in the question and the largest.",
  ...; numbers as N) and by whose reply it is about (the right or the wrong one);
- the most frequent confusions (true kind -> written kind);
- teacher-forced, the decisive token of each true check line: given the right check up
  to "83 is", the probability of the true next token (" no[t in the question]" or
  " in [the question]"), by kind: can it not *decide* membership, or did it go wrong
  earlier (copying the reply's number)?

    python bench/judge_checks.py --model runs/tiny/recipes/jsft_proof_own_check \\
        --prompts 384 --samples 8 --out runs/tiny/recipes/judge_checks.json

`--split train` measures on training prompts (those whose own-error pairs the judge was
trained on), `--no-restate` for a model whose checks do not copy the question's numbers.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def kind(check: str) -> str:
    """A check line with its numbers as N ("83 is not in the question." ->
    "N is not in the question."); a copied list of the question's numbers as one N."""
    return re.sub(r"N(, N)+", "N", re.sub(r"\d+", "N", check))


def line_scores(written: str, truth: tuple[str, str], right_is_a: bool) -> list[dict]:
    """The two lines of one written check ("A: ...\\nB: ...\\n") against the true
    checks of A and B."""
    lines = written.split("\n")
    out = []
    for i, (label, true) in enumerate(zip("AB", truth)):
        line = lines[i] if i < len(lines) else ""
        said = line[len(label) + 2:] if line.startswith(f"{label}: ") else line
        out.append(dict(about="right" if (label == "A") == right_is_a else "wrong",
                        true=kind(true), written=kind(said), ok=said == true,
                        kind_ok=kind(said) == kind(true),
                        copied_ok=_copied(said) == _copied(true)))
    return out


def _copied(check: str) -> str:
    """The copied list of a restated check ("The question has 58, 23. ..." -> "58, 23")."""
    m = re.match(r"The question has ([^.]*)\.", check)
    return m.group(1) if m else ""


def _decisive_positions(ids: list[int], targets, decode) -> list[tuple[int, int]]:
    """(check line, position) of the token after each line's first " is" (two lines)."""
    out, line, done, previous = [], 0, False, None
    for pos in targets:
        piece = decode([ids[pos]])
        if previous == " is" and not done:
            out.append((line, int(pos)))
            done = True
        if "\n" in piece:
            line, done = line + 1, False
            if line > 1:
                break
        previous = piece
    return out


def decisive_tokens(policy, builder, pairs, first, max_length, chunk: int = 64) -> list[dict]:
    """Teacher-forced: each pair's true judgment target (both orders' true checks,
    `builder.training_example`), and per check line the model's probability of the
    token after the line's first " is" (the token that decides membership: " no" or
    " in"; for sort lines also " missing" / " there"). -> [{about, true, p, argmax_ok}]."""
    import jax
    import numpy as np

    from sjjax.model.transformer import merge_params
    model = merge_params(policy.graphdef, policy.params, policy.lora)
    forward = jax.jit(lambda t, m: jax.nn.log_softmax(model(t, m)[0].astype("float32"), -1))
    rows, meta = [], []
    for j, f in zip(pairs, first):
        for chosen_first in (bool(f), not f):  # the pair as shown, then swapped
            made = builder.training_example(j.principle, j.context, j.chosen, j.rejected,
                                            chosen_first, j.rationale_chosen,
                                            j.rationale_rejected, max_length)
            if made is None:
                continue
            ids = [int(t) for t in made[0].tokens]
            rows.append(ids)
            truth = ((j.rationale_chosen, j.rationale_rejected) if chosen_first
                     else (j.rationale_rejected, j.rationale_chosen))
            positions = _decisive_positions(ids, np.flatnonzero(made[0].loss_mask),
                                            builder.tokenizer.decode)
            meta.append((positions, truth, chosen_first))
    # One padded shape for every chunk: one compilation.
    width = max((len(r) for r in rows), default=1)
    out = []
    for start in range(0, len(rows), chunk):
        tokens = np.zeros((chunk, width), np.int32)
        mask = np.zeros((chunk, width), bool)
        for i, r in enumerate(rows[start:start + chunk]):
            tokens[i, :len(r)], mask[i, :len(r)] = r, True
        logp = np.asarray(forward(tokens, mask))
        for i, (positions, truth, chosen_first) in enumerate(meta[start:start + chunk]):
            for line, pos in positions:
                target = tokens[i, pos]
                out.append(dict(about="right" if (line == 0) == chosen_first else "wrong",
                                true=kind(truth[line]),
                                p=float(np.exp(logp[i, pos - 1, target])),
                                argmax_ok=bool(logp[i, pos - 1].argmax() == target)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="run dir of a tiny_check model")
    p.add_argument("--prompts", type=int, default=384)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--split", default="heldout", choices=("heldout", "train"))
    p.add_argument("--no-restate", action="store_true",
                   help="the model's checks do not copy the question's numbers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)

    import jax
    import numpy as np

    from sjjax import presets
    from sjjax.data.sources import load_prompts
    from sjjax.evaluation import stratified_prompts
    from sjjax.evaluation.responses import own_pairs
    from sjjax.evaluation.judge_eval import question_of
    from sjjax.evaluation.shortcuts import baseline_accuracies, chosen_sides
    from sjjax.generation import Responder
    from sjjax.judge import Judge
    from sjjax.phases.common import load_policy, sampling_params

    c = presets.make("evaluate", "tiny_check")
    c.model.source = args.model
    policy = load_policy(c)
    prompts = stratified_prompts(load_prompts(c, split=args.split), args.prompts, args.seed)
    responder = Responder.from_config(policy, c.sampling)
    replies = responder.reply(policy.params, policy.lora, [q.messages for q in prompts],
                              jax.random.key(args.seed + 1), sampling_params(c.sampling),
                              args.samples).texts
    pairs, counts = own_pairs(prompts, replies, rationales=True, restate=not args.no_restate)
    first = chosen_sides(len(pairs), args.seed)
    a = [j.chosen if f else j.rejected for j, f in zip(pairs, first)]
    b = [j.rejected if f else j.chosen for j, f in zip(pairs, first)]
    judge = Judge.from_config(policy.graphdef, policy, c.judge)
    judged = judge(policy.params, policy.lora, [(j.context, x, y) for j, x, y in
                                                zip(pairs, a, b)])
    lines = []
    for i, (j, f) in enumerate(zip(pairs, first)):
        ra, rb = ((j.rationale_chosen, j.rationale_rejected) if f
                  else (j.rationale_rejected, j.rationale_chosen))
        lines += line_scores(judged.checks[i][0][0], (ra, rb), bool(f))   # a shown first
        lines += line_scores(judged.checks[i][0][1], (rb, ra), not f)     # b shown first
    by_kind = collections.defaultdict(list)
    for line in lines:
        by_kind[f"{line['about']}: {line['true']}"].append(line["ok"])
    confusions = collections.Counter((x["true"], x["written"]) for x in lines if not x["ok"])
    baselines = baseline_accuracies(a, b, [question_of(j) for j in pairs], first)
    decisive = decisive_tokens(policy, judge.builder, pairs, first, c.judge.max_length)
    decisive_by_kind = collections.defaultdict(list)
    for x in decisive:
        decisive_by_kind[f"{x['about']}: {x['true']}"].append(x)
    summary = dict(
        model=args.model, split=args.split, pairs=len(pairs), counts=counts.__dict__,
        judge_accuracy=float(np.mean(np.asarray(judged.a_wins) == first)) if pairs else None,
        position_consistency=judged.position_consistency,
        bar=baselines["best"], bar_rule=baselines["best_rule"],
        check_lines_right=float(np.mean([x["ok"] for x in lines])) if lines else None,
        # the kind of check right (numbers aside) / the question's numbers copied right
        check_kind_right=float(np.mean([x["kind_ok"] for x in lines])) if lines else None,
        copied_numbers_right=float(np.mean([x["copied_ok"] for x in lines])) if lines else None,
        by_kind={k: {"right": float(np.mean(v)), "n": len(v)} for k, v in
                 sorted(by_kind.items(), key=lambda kv: -len(kv[1]))},
        # teacher-forced: P(the true decisive token | the true check before it)
        decisive_token=dict(
            mean_p=float(np.mean([x["p"] for x in decisive])) if decisive else None,
            argmax_right=float(np.mean([x["argmax_ok"] for x in decisive])) if decisive
            else None,
            by_kind={k: {"mean_p": float(np.mean([x["p"] for x in v])),
                         "argmax_right": float(np.mean([x["argmax_ok"] for x in v])),
                         "n": len(v)}
                     for k, v in sorted(decisive_by_kind.items(), key=lambda kv: -len(kv[1]))}),
        confusions=[{"true": t, "written": w, "n": n} for (t, w), n in
                    confusions.most_common(12)])
    print(json.dumps({k: v for k, v in summary.items() if k != "confusions"}, indent=1))
    for row in summary["confusions"]:
        print(f"{row['n']:4d}  {row['true']!r} -> {row['written']!r}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
