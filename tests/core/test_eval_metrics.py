"""Evaluation metrics on hand-computed fixtures."""

import math

from sjjax.eval_metrics import (judge_accuracy, longer_wins_accuracy, repetition_rate,
                                response_stats, win_rate)


def test_repetition_rate_by_hand():
    # "a b c d a b c d": 4-grams abcd, bcda, cdab, dabc, abcd -> 5 grams, 4 distinct
    assert repetition_rate("a b c d a b c d") == 1 - 4 / 5
    assert repetition_rate("one two three four five") == 0.0
    assert repetition_rate("too short") == 0.0
    # "x x x x x x": 3 grams, all (x,x,x,x) -> 1 distinct
    assert math.isclose(repetition_rate("x x x x x x"), 2 / 3)


def test_win_rate_on_a_fixed_table():
    out = win_rate([0.9, 0.2, 0.5, 0.7, 0.4])
    assert (out["wins"], out["losses"], out["ties"]) == (2, 2, 1)
    assert math.isclose(out["win_rate"], 2.5 / 5)
    out = win_rate([0.52, 0.45, 0.8], tie_margin=0.05)
    assert (out["wins"], out["losses"], out["ties"]) == (1, 0, 2)
    assert math.isclose(out["win_rate"], 2 / 3)


def test_judge_accuracy_and_length_baseline():
    assert judge_accuracy([True, False, True, True]) == 0.75
    assert longer_wins_accuracy(["long answer", "a", "same"], ["short", "bbb", "four"]) == 0.5


def test_response_stats():
    stats = response_stats(["a b c d a b c d", "hello world"], [8, 2])
    assert stats["length_tokens"] == 5 and stats["length_words"] == 5
    assert math.isclose(stats["repetition_4gram"], 0.1)
