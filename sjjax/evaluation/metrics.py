"""Evaluation metrics as pure functions on arrays and strings (tested on hand-computed
fixtures).

- oracle accuracy: mean of an oracle's 0/1 scores;
- judge accuracy: share of labelled pairs where the judge prefers the chosen response;
- win rate: wins + ties / 2 over all comparisons (a judgment table);
- length: mean response length in tokens (or words);
- n-gram repetition: 1 - distinct n-grams / all n-grams of a response (words).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def mean_or_nan(values) -> float:
    values = np.asarray(list(values), np.float64)
    return float(values.mean()) if values.size else float("nan")


def repetition_rate(text: str, n: int = 4) -> float:
    """Share of a text's word n-grams that repeat an earlier one (0 = no repetition).
    Texts with fewer than n words have no n-grams and score 0."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def win_rate(a_scores: Sequence[float], tie_margin: float = 0.0) -> dict:
    """Win rate of the model's responses from judge scores P(model's response is better).

    A score within tie_margin of 1/2 is a tie (counted as half a win)."""
    s = np.asarray(a_scores, np.float64)
    wins = s > 0.5 + tie_margin
    losses = s < 0.5 - tie_margin
    ties = ~(wins | losses)
    n = max(len(s), 1)
    return {"win_rate": float((wins.sum() + 0.5 * ties.sum()) / n), "wins": int(wins.sum()),
            "losses": int(losses.sum()), "ties": int(ties.sum()), "n": int(len(s))}


def judge_accuracy(chosen_wins: Sequence[bool]) -> float:
    """Share of labelled pairs on which the judge prefers the chosen response."""
    return mean_or_nan(np.asarray(chosen_wins, bool))


def longer_wins_accuracy(chosen: Sequence[str], rejected: Sequence[str]) -> float:
    """The "longer response wins" baseline judge's accuracy (ties count half)."""
    c = np.array([len(x) for x in chosen])
    r = np.array([len(x) for x in rejected])
    return mean_or_nan(np.where(c == r, 0.5, (c > r).astype(float)))


def response_stats(texts: Sequence[str], token_lengths: Sequence[int] | None = None) -> dict:
    return {
        "length_tokens": mean_or_nan(token_lengths) if token_lengths is not None else None,
        "length_words": mean_or_nan(len(t.split()) for t in texts),
        "repetition_4gram": mean_or_nan(repetition_rate(t) for t in texts),
    }
