"""Question-blind baselines on hand-made pairs, and the shortcut-proof held-out pairs:
on 2,000 generated pairs per family, every baseline is right on at most 55%."""

import math

import pytest

from sjjax.data import synthetic
from sjjax.evaluation import shortcuts
from sjjax.evaluation.shortcuts import (baseline_accuracies, first_shown, increasing_list,
                                        labelled_baselines, larger_number, longer,
                                        reuses_question_numbers)

Q = "Which number is larger, 61 or 85? Reply with the number."


@pytest.mark.parametrize("rule, a, b, expected", [
    (longer, "The answer is 100.", "The answer is 99.", 1.0),
    (longer, "The answer is 9.", "The answer is 10.", 0.0),
    (longer, "The answer is 12.", " The answer is 21. ", 0.5),     # stripped
    (first_shown, "anything", "else", 1.0),
    (larger_number, "The answer is 85.", "The answer is 61.", 1.0),
    (larger_number, "The answer is 3, 9.", "The answer is 10.", 0.0),  # its largest number
    (larger_number, "The answer is yes.", "The answer is 3.", 0.5),    # no number: tie
    (larger_number, "The answer is 85.", "85 it is", 0.5),
    (increasing_list, "The answer is 3, 5, 9.", "The answer is 5, 3, 9.", 1.0),
    (increasing_list, "The answer is 3, 3, 9.", "The answer is 9, 3.", 1.0),  # non-decreasing
    (increasing_list, "The answer is 3, 5, 9.", "The answer is 3, 5, 10.", 0.5),  # both
    (increasing_list, "The answer is 9.", "The answer is 9, 5.", 0.5),   # neither: one number
    (reuses_question_numbers, "The answer is 85.", "The answer is 86.", 1.0),
    (reuses_question_numbers, "The answer is 85.", "The answer is 61 or 85.", 0.0),
    (reuses_question_numbers, "The answer is 85, 85.", "The answer is 61.", 0.5),  # distinct
])
def test_each_rule_on_hand_made_pairs(rule, a, b, expected):
    assert rule(a, b, Q) == expected
    if rule is not first_shown:  # antisymmetric: swapping the pair swaps the verdict
        assert rule(b, a, Q) == 1.0 - expected


def test_rules_other_than_reuse_never_read_the_question():
    for name, rule in shortcuts.RULES.items():
        if name != "reuses_question_numbers":
            assert rule("The answer is 85.", "The answer is 61.", Q) == \
                rule("The answer is 85.", "The answer is 61.", "")


def test_baseline_accuracies_count_ties_half_and_name_the_bar():
    a = ["The answer is 85.", "The answer is 3, 5.", "The answer is 61."]
    b = ["The answer is 61.", "The answer is 5, 3.", "The answer is 85."]
    out = baseline_accuracies(a, b, [Q, "Sort 3, 5.", Q], [True, True, False])
    assert math.isclose(out["larger_number"], (1 + 0.5 + 1) / 3) and out["longer"] == 0.5
    assert math.isclose(out["increasing_list"], (0.5 + 1 + 0.5) / 3)
    assert out["first_shown"] == 2 / 3
    assert out["best"] == out["larger_number"] and out["best_rule"] == "larger_number"


def _rates(pairs, seed=0):
    return labelled_baselines([p.messages[0]["content"] for p in pairs],
                              [p.chosen for p in pairs], [p.rejected for p in pairs], seed)


@pytest.mark.parametrize("family", synthetic.FAMILIES)
def test_shortcut_proof_pairs_defeat_every_question_blind_rule(family):
    tasks = synthetic.generate(0, 667, "heldout", (family,), (1, 2, 3), stream="pairs")[:2000]
    assert len(tasks) == 2000
    pairs = synthetic.shortcut_proof_pairs(tasks, seed=0)
    for task, pair in zip(tasks, pairs):  # right vs wrong by the oracle
        assert synthetic.score(task.meta, pair.chosen) == 1.0
        assert synthetic.score(task.meta, pair.rejected) == 0.0
    rates = _rates(pairs)
    assert all(rates[r] <= 0.55 for r in shortcuts.RULES), rates
    assert rates["best_either_way"] <= 0.55, rates  # and no rule reversed ("shorter wins")
    assert len({p.kind.split("_")[0] for p in pairs}) >= 2  # not a single kind of error


def test_shortcut_proof_pairs_with_the_tiny_presets_directions():
    """One direction asked (the tiny preset): every right answer is the larger number or
    the increasing list, and the old labelled pairs are solved by a rule; the
    shortcut-proof pairs are not by any of the five rules. (Reversed, "shorter wins" is
    right on about two thirds here: with one direction asked, a wrong answer that is
    neither larger, nor more of the question's numbers, nor shorter does not exist in
    the answer format; docs/results.md.)"""
    from sjjax.presets import tiny
    for family in tiny.TASKS["families"]:
        tasks = synthetic.generate(0, 500, "heldout", (family,), (1, 2), stream="pairs",
                                   directions=tiny.TASKS["directions"])
        old = _rates(synthetic.labelled_pairs(tasks, 0))
        new = _rates(synthetic.shortcut_proof_pairs(tasks, 0))
        assert old["best"] >= 0.85, (family, old)
        assert all(new[r] <= 0.55 for r in shortcuts.RULES), (family, new)


def test_shortcut_proof_pairs_are_deterministic():
    tasks = synthetic.generate(3, 20, "heldout", ("sort", "compare"), (1, 2), stream="pairs")
    a = synthetic.shortcut_proof_pairs(tasks, seed=3)
    assert a == synthetic.shortcut_proof_pairs(tasks, seed=3)
    assert [p.chosen for p in a] == [t.demonstration() for t in tasks]


def test_a_synthetic_source_can_train_on_shortcut_proof_pairs():
    """`pairs: shortcut_proof` in a synthetic source: the same tasks' judgments, with the
    wrong answers of `shortcut_proof_pairs` (defeating the rules) in place of the
    hand-made ones; a value that is neither kind names its config key."""
    from sjjax.data.sources import read_synthetic
    from sjjax.errors import ConfigError
    spec = dict(format="synthetic", seed=0, n_pairs=300, families=("compare",), levels=(1, 2))
    old = read_synthetic(spec).judgments
    new = read_synthetic({**spec, "pairs": "shortcut_proof"}).judgments
    assert [j.chosen for j in old] == [j.chosen for j in new]
    assert [j.rejected for j in old] != [j.rejected for j in new]
    tasks = synthetic.generate(0, 300, "train", ("compare",), (1, 2), stream="pairs")
    assert [j.rejected for j in new] == [
        p.judgment().rejected for p in synthetic.shortcut_proof_pairs(tasks, 0)]
    with pytest.raises(ConfigError, match=r"config\.data\.sources\[0\]\.pairs: 'proof'"):
        read_synthetic({**spec, "pairs": "proof"})
