"""The judge's accuracy on labelled pairs, beside the question-blind baselines on the
same pairs (`shortcuts`), with its position consistency, exact ties, and accuracy per
task family or source."""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from sjjax.data.records import Judgment
from sjjax.evaluation.metrics import longer_wins_accuracy, mean_or_nan
from sjjax.evaluation.shortcuts import baseline_accuracies, chosen_sides
from sjjax.judge import Judge


@dataclasses.dataclass
class JudgeEval:
    accuracy: float                 # judge prefers the chosen response (ties count half)
    position_consistency: float
    longer_wins_accuracy: float     # the "longer response wins" baseline
    n: int
    by_group: dict                  # accuracy per family (synthetic) or source
    ties: int = 0                   # exact ties (score exactly 1/2): counted one half
    baselines: dict = dataclasses.field(default_factory=dict)  # rule -> accuracy, best
    baselines_by_group: dict = dataclasses.field(default_factory=dict)
    chosen_first: float = float("nan")  # share of pairs with the chosen response as a
    # A judge that writes its check first (sjjax.judge), on pairs that carry the true
    # checks (rationales): the share of written checks (both orders) equal to the true
    # one, the accuracy on the pairs whose two checks are both right, and a few examples.
    check_accuracy: float | None = None
    accuracy_when_checks_right: float | None = None
    check_examples: list | None = None


    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def question_of(j: Judgment) -> str:
    """The text the question-blind "reuses the question's numbers" rule reads the
    numbers of: the user turns when the record has them, else its context."""
    if j.messages:
        return "\n".join(m["content"] for m in j.messages if m.get("role") == "user")
    return j.context


def exact_ties(judged) -> np.ndarray:
    """[N] bool: pairs the judge cannot decide: as many principles for a as for b and a
    mean score of exactly 1/2 (the vote then goes to a by convention)."""
    ps = np.asarray(judged.principle_scores, np.float64)
    even = (ps > 0.5).sum(axis=1) == (ps < 0.5).sum(axis=1)
    return even & np.isclose(np.asarray(judged.scores, np.float64), 0.5, rtol=0, atol=1e-12)


def evaluate_judge(judge: Judge, params, lora, judgments: Sequence[Judgment],
                   use_lora: bool = True, group: Callable[[Judgment], str] | None = None,
                   seed: int = 0) -> JudgeEval:
    """Accuracy on labelled pairs. The chosen response is shown as `a` or `b` on a
    seeded random side per pair (`shortcuts.chosen_sides(n, seed)`); an exact tie
    counts one half (and is counted in `ties`), so a judge that cannot tell the two
    apart scores 0.5 whatever the side. The question-blind baselines are measured on
    the same pairs, shown the same way."""
    first = chosen_sides(len(judgments), seed)
    a = [j.chosen if f else j.rejected for j, f in zip(judgments, first)]
    b = [j.rejected if f else j.chosen for j, f in zip(judgments, first)]
    questions = [question_of(j) for j in judgments]
    result = judge(params, lora, [(j.context, x, y) for j, x, y in zip(judgments, a, b)],
                   use_lora=use_lora)
    tie = exact_ties(result)
    correct = np.where(tie, 0.5, (np.asarray(result.a_wins, bool) == first).astype(float))
    by_group, baselines_by_group = {}, {}
    if group is not None:
        names = np.array([group(j) for j in judgments])
        for name in sorted(set(names)):
            sel = names == name
            by_group[name] = mean_or_nan(correct[sel])
            baselines_by_group[name] = baseline_accuracies(
                [x for x, s in zip(a, sel) if s], [y for y, s in zip(b, sel) if s],
                [q for q, s in zip(questions, sel) if s], first[sel])
    checks = (_check_scores(judge, result, judgments, first, correct)
              if result.checks is not None else {})
    return JudgeEval(mean_or_nan(correct), result.position_consistency,
                     longer_wins_accuracy([j.chosen for j in judgments],
                                          [j.rejected for j in judgments]),
                     len(judgments), by_group, ties=int(tie.sum()),
                     baselines=baseline_accuracies(a, b, questions, first),
                     baselines_by_group=baselines_by_group,
                     chosen_first=mean_or_nan(first), **checks)


def _check_scores(judge: Judge, result, judgments: Sequence[Judgment], first: np.ndarray,
                  correct: np.ndarray, examples: int = 4) -> dict:
    """How often a check-first judge's written checks (principle 0) are the true ones
    (the template's check filled with the judgments' rationales in the shown order)."""
    known = [j.rationale_chosen is not None and j.rationale_rejected is not None
             for j in judgments]
    if not any(known):
        return {}
    template = judge.builder.templates[judge.principles[0]].check
    right, both, shown = [], [], []
    for i, (j, f) in enumerate(zip(judgments, first)):
        if not known[i]:
            continue
        ra, rb = ((j.rationale_chosen, j.rationale_rejected) if f
                  else (j.rationale_rejected, j.rationale_chosen))
        truth = (template.format(rationale_a=ra, rationale_b=rb),
                 template.format(rationale_a=rb, rationale_b=ra))
        written = result.checks[i][0]
        ok = [w == t for w, t in zip(written, truth)]
        right += ok
        both.append(all(ok))
        if len(shown) < examples:
            shown.append({"a": j.chosen if f else j.rejected, "b": j.rejected if f else j.chosen,
                          "written": list(written), "true": list(truth),
                          "right": float(correct[i])})
    sel = np.array(known)
    return {"check_accuracy": mean_or_nan(right),
            "accuracy_when_checks_right": mean_or_nan(correct[sel][np.array(both)]),
            "check_examples": shown}


def synthetic_family(j) -> str:
    """'compare:1' from a synthetic record's source 'synthetic:seed:stream:family:level:i'."""
    parts = j.source.split(":")
    return f"{parts[3]}:{parts[4]}" if len(parts) > 4 and parts[0] == "synthetic" else "all"
