"""The suite as sjjax records (`sjjax.data.records`): SFT conversations (a chosen
fraction with a wrong demonstration), labelled (right, wrong) pairs and their
judgments, held-out prompts, and judgments from a model's own samples labelled by
the oracle."""

from __future__ import annotations

import dataclasses
import random
from typing import Sequence

import numpy as np

from sjjax.data.records import (Conversation, Judgment, Messages, Prompt, assistant_turn,
                                render_context)
from sjjax.data.synthetic.negatives import wrong_answer, wrong_candidates
from sjjax.data.synthetic.oracle import score
from sjjax.data.synthetic.rationales import explainer
from sjjax.data.synthetic.tasks import Task, respond


def preference_row(messages: Sequence[dict], chosen: str, rejected: str,
                   rationales: tuple[str, str] | None = None) -> dict:
    """The generic preference format (TRL conversational): message lists; `rationales`
    (chosen's, rejected's) adds rationale_chosen / rationale_rejected."""
    row = {"prompt": [dict(m) for m in messages],
           "chosen": [assistant_turn(chosen)], "rejected": [assistant_turn(rejected)]}
    if rationales is not None:
        row["rationale_chosen"], row["rationale_rejected"] = rationales
    return row



def sft_conversations(tasks: Sequence[Task], wrong_fraction: float = 0.0,
                      seed: int = 0) -> list[Conversation]:
    """One conversation per task; exactly round(wrong_fraction * len(tasks)) of them
    (chosen at random) demonstrate a wrong answer (their source ends in ':wrong')."""
    if not 0 <= wrong_fraction <= 1:
        raise ValueError(f"wrong_fraction={wrong_fraction} must be in [0, 1]")
    rng = random.Random(f"{seed}|sft-wrong")
    wrong = set(rng.sample(range(len(tasks)), round(wrong_fraction * len(tasks))))
    out = []
    for i, task in enumerate(tasks):
        if i in wrong:
            text, source = respond(wrong_answer(task.meta, rng)[0]), task.source + ":wrong"
        else:
            text, source = task.demonstration(), task.source
        out.append(Conversation(task.messages + (assistant_turn(text),), source))
    return out


@dataclasses.dataclass(frozen=True)
class LabelledPair:
    messages: Messages   # the prompt (user turn)
    chosen: str
    rejected: str
    kind: str            # what kind of wrong answer `rejected` is
    source: str = ""
    meta: dict | None = dataclasses.field(default=None, compare=False)  # the task's

    def judgment(self, principle: str = "helpfulness", rationales: bool = False,
                 restate: bool | str = False) -> Judgment:
        """rationales: each response's check against the question (`rationales.explain`,
        each starting as `restate` says: see `explain`) as the judgment's rationales."""
        fn = explainer(rationales, restate)
        why = (fn(self.meta, self.chosen), fn(self.meta, self.rejected)) if fn else (None, None)
        return Judgment(render_context(self.messages), self.chosen, self.rejected, principle,
                        *why, source=self.source, messages=self.messages)

    def row(self) -> dict:
        return preference_row(self.messages, self.chosen, self.rejected)


def labelled_pairs(tasks: Sequence[Task], seed: int = 0) -> list[LabelledPair]:
    """(right, plausible wrong) per task, both in the demonstration format."""
    rng = random.Random(f"{seed}|pairs")
    out = []
    for task in tasks:
        wrong, kind = wrong_answer(task.meta, rng)
        out.append(LabelledPair(task.messages, task.demonstration(), respond(wrong), kind,
                                task.source, task.meta))
    return out


def shortcut_proof_pairs(tasks: Sequence[Task], seed: int = 0, slack: float = 0.5,
                         below: float = 0.1, max_candidates: int = 12
                         ) -> list[LabelledPair]:
    """(right, wrong) per task with the wrong answers chosen so that no question-blind
    rule (`sjjax.evaluation.shortcuts.RULES`) is right on more than about half of the
    pairs, family by family. (Every rule but first_shown is antisymmetric, so the side
    the chosen response is shown on does not matter to them; first_shown is defeated by
    showing it on a random side, as `evaluate_judge` does.)

    For each task every candidate of `negatives.wrong_candidates` that the oracle scores
    wrong is tried (of the many "replaced"/"inserted" lists, `max_candidates` drawn at
    random); each rule's running excess over one half (ties count half) is kept
    per family, and a candidate is drawn at random among those whose cost after the pick
    (squared excess, an excess below one half weighted by `below`) is within `slack` of
    the smallest: the kinds stay varied, and every rule stays near 0.5 (a rule far
    below 0.5 is a shortcut too: its opposite). `kind` names the pick."""
    from sjjax.evaluation.shortcuts import RULES
    rules = [r for name, r in RULES.items() if name != "first_shown"]
    rng = random.Random(f"{seed}|shortcut-proof")
    excess: dict[str, np.ndarray] = {}
    out = []
    for task in tasks:
        right = task.demonstration()
        candidates = wrong_candidates(task.meta, rng)
        many = sorted(k for k in candidates if k.startswith(("replaced", "inserted")))
        if len(many) > max_candidates:  # long sort lists: a random subset of these kinds
            for k in set(many) - set(rng.sample(many, max_candidates)):
                del candidates[k]
        candidates = {k: respond(v) for k, v in candidates.items()}
        candidates = {k: v for k, v in candidates.items()
                      if v != right and score(task.meta, v) == 0.0}
        if not candidates:
            raise RuntimeError(f"{task.source}: no wrong answer candidate")
        kinds = sorted(candidates)
        votes = np.array([[rule(right, candidates[k], task.question) for rule in rules]
                          for k in kinds])  # [K, R]: 1 = the rule prefers the right one
        run = excess.setdefault(task.family, np.zeros(len(rules)))
        after = run + votes - 0.5
        cost = (np.maximum(after, 0) ** 2 + below * np.minimum(after, 0) ** 2).sum(axis=1)
        ok = [k for k, c in zip(kinds, cost) if c <= cost.min() + slack]
        kind = rng.choice(ok)
        run += votes[kinds.index(kind)] - 0.5
        out.append(LabelledPair(task.messages, right, candidates[kind], kind, task.source,
                                task.meta))
    return out


def judgments(tasks: Sequence[Task], seed: int = 0,
              principle: str = "helpfulness") -> list[Judgment]:
    return [p.judgment(principle) for p in labelled_pairs(tasks, seed)]


def prompts(tasks: Sequence[Task]) -> list[Prompt]:
    return [t.prompt() for t in tasks]


@dataclasses.dataclass
class SampleCounts:
    identical: int = 0
    both_correct: int = 0
    both_wrong: int = 0
    informative: int = 0   # exactly one correct: these become Judgment records

    @property
    def total(self) -> int:
        return self.identical + self.both_correct + self.both_wrong + self.informative


def pairs_from_samples(prompts: Sequence[Prompt], responses_a: Sequence[str],
                       responses_b: Sequence[str], principle: str = "helpfulness",
                       rationales: bool = False, restate: bool | str = False
                       ) -> tuple[list[Judgment], SampleCounts]:
    """Labels a model's two samples per prompt with the oracle. Identical responses
    (after stripping whitespace) are counted as identical whatever their score; of
    the others, only pairs with exactly one correct response become Judgments
    (chosen = the correct one; rationales: with both responses' checks, `explain`)."""
    if not len(prompts) == len(responses_a) == len(responses_b):
        raise ValueError(f"{len(prompts)} prompts but {len(responses_a)} and "
                         f"{len(responses_b)} responses")
    counts, out = SampleCounts(), []
    explain = explainer(rationales, restate)
    for i, (p, a, b) in enumerate(zip(prompts, responses_a, responses_b)):
        if a.strip() == b.strip():
            counts.identical += 1
            continue
        sa, sb = score(p.meta, a), score(p.meta, b)
        if sa and sb:
            counts.both_correct += 1
        elif not sa and not sb:
            counts.both_wrong += 1
        else:
            counts.informative += 1
            chosen, rejected = (a, b) if sa else (b, a)
            why = ((explain(p.meta, chosen), explain(p.meta, rejected)) if explain
                   else (None, None))
            out.append(Judgment(p.context, chosen, rejected, principle, *why,
                                source=f"{p.source or f'prompt {i}'}:samples",
                                messages=p.messages))
    return out, counts

