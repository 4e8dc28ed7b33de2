"""Can a judge trained with rationales (JM-PR) *state* the check it fails to *decide* on?

For a tiny-suite model trained with `configs/jsft_own_errors.py:<run>,rationales`: samples
its own replies to held-out prompts (the preset's sampling, `--samples` per prompt), keeps
the informative pairs (exactly one reply right, as the evaluation's own pairs), shows the
right reply on a seeded random side and lets the model continue the judge prompt greedily:
its decision token, then its rationales ("A: 83 is not in the question.\\nB: ...").
Measures, on the same pairs,
- decision accuracy: the greedy decision token names the right reply;
- rationale accuracy: each written rationale equals the oracle's check
  (`synthetic.explain`) of the reply it is about, for the right and the wrong reply;
- the verdict the rationales imply (the reply whose rationale reads as a pass wins; none
  or both: no verdict), and how often the decision agrees with its own rationales.
The best question-blind rule's accuracy on the same pairs is printed beside them.

    python bench/judge_rationales.py --model runs/tiny/recipes/jsft_proof_own_rationales \\
        --prompts 384 --samples 8 --out runs/tiny/recipes/judge_rationales.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PASS = re.compile(r"(in the question and the (largest|smallest|larger|smaller)"
                  r"|Every number is there, in \w+ order|is right)\.$")


def parse(text: str) -> tuple[str | None, str | None, str | None]:
    """A greedy judge continuation ' A\\nA: ...\\nB: ...' -> (decision 'A'/'B' or None,
    rationale of A, rationale of B)."""
    lines = text.split("\n")
    decision = lines[0].strip() if lines[0].strip() in ("A", "B") else None
    found = {m.group(1): m.group(2).strip() for m in
             (re.match(r"^(A|B): (.*)$", line) for line in lines[1:]) if m}
    return decision, found.get("A"), found.get("B")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="run dir of a model trained with rationales")
    p.add_argument("--prompts", type=int, default=384)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)

    import jax
    import numpy as np

    from sjjax import presets
    from sjjax.data import synthetic
    from sjjax.data.sources import load_prompts
    from sjjax.data.templates import COMPACT_JUDGE_TEMPLATE_RATIONALE, JudgePromptBuilder
    from sjjax.evaluation import stratified_prompts
    from sjjax.evaluation.responses import own_pairs
    from sjjax.evaluation.shortcuts import RULES
    from sjjax.generation import Responder
    from sjjax.phases.common import load_policy, sampling_params
    from sjjax.sampling import SamplingParams

    c = presets.make("evaluate", "tiny")
    c.model.source = args.model
    c.judge.templates = COMPACT_JUDGE_TEMPLATE_RATIONALE
    policy = load_policy(c)
    prompts = stratified_prompts(load_prompts(c, split="heldout"), args.prompts, args.seed)
    responder = Responder.from_config(policy, c.sampling)
    replies = responder.reply(policy.params, policy.lora, [q.messages for q in prompts],
                              jax.random.key(args.seed + 1), sampling_params(c.sampling),
                              args.samples).texts
    pairs, counts = own_pairs(prompts, replies)
    meta = {q.source: q.meta for q in prompts}
    builder = JudgePromptBuilder.from_config(policy.tokenizer, c.judge)
    rng = np.random.default_rng(args.seed)
    right_first = rng.random(len(pairs)) < 0.5
    ids = []
    for j, first in zip(pairs, right_first):
        a, b = (j.chosen, j.rejected) if first else (j.rejected, j.chosen)
        ids.append(builder.prompt(j.principle, j.context, a, b, c.judge.max_length).ids)
    c.sampling.max_new_tokens = 48
    judge = Responder.from_config(policy, c.sampling)
    texts = [t[0] for t in judge.sample(policy.params, policy.lora, ids, jax.random.key(0),
                                        SamplingParams(greedy=True)).texts]

    rows = []
    for j, first, text in zip(pairs, right_first, texts):
        m = meta[j.source.rsplit(":samples", 1)[0]]
        decision, why_a, why_b = parse(text)
        why_right, why_wrong = (why_a, why_b) if first else (why_b, why_a)
        right_side = "A" if first else "B"
        passes = {s: bool(w and PASS.search(w)) for s, w in (("A", why_a), ("B", why_b))}
        implied = next(iter(s for s in passes if passes[s])) if sum(passes.values()) == 1 \
            else None
        rows.append(dict(
            stratum=f"{m['family']}:{m['level']}", decision_right=decision == right_side,
            rationale_right_ok=why_right == synthetic.explain(m, j.chosen),
            rationale_wrong_ok=why_wrong == synthetic.explain(m, j.rejected),
            implied=implied, implied_right=implied == right_side,
            agrees=decision is not None and decision == implied,
            rules={name: rule(j.chosen, j.rejected, j.context)
                   for name, rule in RULES.items() if name != "first_shown"},
            text=text))

    def mean(key, subset=rows):
        return float(np.mean([r[key] for r in subset])) if subset else float("nan")
    rule_names = rows[0]["rules"] if rows else {}
    rules = {n: float(np.mean([r["rules"][n] for r in rows])) for n in rule_names}
    summary = dict(
        model=args.model, pairs=len(rows), counts=counts.__dict__,
        decision_accuracy=mean("decision_right"),
        rationale_accuracy_right_reply=mean("rationale_right_ok"),
        rationale_accuracy_wrong_reply=mean("rationale_wrong_ok"),
        implied_verdict_given=float(np.mean([r["implied"] is not None for r in rows])),
        implied_verdict_accuracy=mean("implied_right"),
        decision_agrees_with_own_rationales=mean("agrees"),
        best_question_blind_rule=max(rules.items(), key=lambda kv: kv[1]) if rules else None,
        by_stratum={s: dict(n=len(sub), decision=mean("decision_right", sub),
                            rationale_wrong_reply=mean("rationale_wrong_ok", sub),
                            implied=mean("implied_right", sub))
                    for s in sorted({r["stratum"] for r in rows})
                    for sub in [[r for r in rows if r["stratum"] == s]]},
        examples=[r["text"] for r in rows[:6]])
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(summary, rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
