"""Question-blind baselines: rules that judge a pair without reading the question.

A judge that does not beat the best of them (the bar) has learned a shortcut, not the
task. Each rule maps (response_a, response_b, question) -> the share of the win that
goes to `a`: 1.0 (a wins), 0.0 (b wins) or 0.5 (tie). Only `reuses_question_numbers`
looks at the question, and only at the numbers in it.

    longer                    the longer response (characters, stripped) wins
    first_shown               the response shown first (a) wins
    larger_number             the response whose largest number is larger wins
    increasing_list           a response whose numbers (two or more) are in
                              non-decreasing order wins over one whose are not
    reuses_question_numbers   the response with more distinct numbers that also occur
                              in the question wins

A response without numbers ties with any other under the number rules.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np

_NUMBER = re.compile(r"(?<![\w.])\d+(?![\d])")


def numbers(text: str) -> list[int]:
    """The integers written in a text, in order."""
    return [int(x) for x in _NUMBER.findall(text)]


def _cmp(x, y) -> float:
    return 1.0 if x > y else 0.0 if x < y else 0.5


def longer(a: str, b: str, question: str = "") -> float:
    return _cmp(len(a.strip()), len(b.strip()))


def first_shown(a: str, b: str, question: str = "") -> float:
    return 1.0


def larger_number(a: str, b: str, question: str = "") -> float:
    na, nb = numbers(a), numbers(b)
    if not na or not nb:
        return 0.5
    return _cmp(max(na), max(nb))


def _increasing(text: str) -> bool:
    n = numbers(text)
    return len(n) >= 2 and all(x <= y for x, y in zip(n, n[1:]))


def increasing_list(a: str, b: str, question: str = "") -> float:
    return _cmp(_increasing(a), _increasing(b))


def reuses_question_numbers(a: str, b: str, question: str = "") -> float:
    q = set(numbers(question))
    return _cmp(len(set(numbers(a)) & q), len(set(numbers(b)) & q))


RULES: dict[str, Callable[[str, str, str], float]] = {
    "longer": longer, "first_shown": first_shown, "larger_number": larger_number,
    "increasing_list": increasing_list, "reuses_question_numbers": reuses_question_numbers,
}


def rule_votes(a: Sequence[str], b: Sequence[str], questions: Sequence[str]) -> dict:
    """{rule: [N] share of the win each rule gives to a (1, 0.5 or 0)}."""
    return {name: np.array([rule(x, y, q) for x, y, q in zip(a, b, questions)], np.float64)
            for name, rule in RULES.items()}


def agreement(votes: np.ndarray, a_is_right: np.ndarray) -> float:
    """Mean agreement of a rule's votes with the truth (ties count one half)."""
    votes = np.asarray(votes, np.float64)
    if votes.size == 0:
        return float("nan")
    right = np.asarray(a_is_right, bool)
    return float(np.where(right, votes, 1.0 - votes).mean())


def baseline_accuracies(a: Sequence[str], b: Sequence[str], questions: Sequence[str],
                        a_is_right: Sequence[bool]) -> dict:
    """Each rule's accuracy on the pairs (a, b) as shown, and the bar:
    {"longer": .., ..., "best": max, "best_rule": name,
     "best_either_way": max over the rules and their opposites ("shorter wins" is
     question-blind too), "best_either_way_rule": e.g. "longer (reversed)"}."""
    votes = rule_votes(a, b, questions)
    out = {name: agreement(v, np.asarray(a_is_right, bool)) for name, v in votes.items()}
    finite = {k: v for k, v in out.items() if np.isfinite(v)}
    best = max(finite, key=finite.get) if finite else None
    either = {**finite, **{f"{k} (reversed)": 1.0 - v for k, v in finite.items()}}
    best_either = max(either, key=either.get) if either else None
    out["best"] = finite[best] if best else float("nan")
    out["best_rule"] = best
    out["best_either_way"] = either[best_either] if best_either else float("nan")
    out["best_either_way_rule"] = best_either
    return out


def labelled_baselines(questions: Sequence[str], chosen: Sequence[str],
                       rejected: Sequence[str], seed: int = 0) -> dict:
    """baseline_accuracies with the chosen response on a seeded random side per pair
    (the presentation `evaluate_judge` uses with the same seed)."""
    chosen_first = chosen_sides(len(chosen), seed)
    a = [c if f else r for c, r, f in zip(chosen, rejected, chosen_first)]
    b = [r if f else c for c, r, f in zip(chosen, rejected, chosen_first)]
    return baseline_accuracies(a, b, questions, chosen_first)


def chosen_sides(n: int, seed: int) -> np.ndarray:
    """[n] bool: the chosen response is shown first (as a). Seeded, about half."""
    return np.random.default_rng([seed, 0x51DE]).random(n) < 0.5
