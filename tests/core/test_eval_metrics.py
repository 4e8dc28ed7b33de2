"""Evaluation metrics on hand-computed fixtures."""

import math

from sjjax.evaluation.metrics import (judge_accuracy, longer_wins_accuracy, repetition_rate,
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


# ---------------------------------------------------------------- evaluate_judge

import numpy as np  # noqa: E402

from sjjax.data.records import Judgment  # noqa: E402
from sjjax.evaluation.judge_eval import evaluate_judge  # noqa: E402
from sjjax.judge import Judgement, aggregate  # noqa: E402


class FakeJudge:
    """P(A) per order from a function of (a, b): order 0 shows a first, order 1 b first."""

    def __init__(self, p_a):
        self.p_a, self.seen = p_a, []

    def __call__(self, params, lora, pairs, use_lora=True):
        self.seen += list(pairs)
        probs = np.array([[[self.p_a(a, b), self.p_a(b, a)]] for _, a, b in pairs], np.float32)
        ps, mean, a_wins, consistent, ties = aggregate(probs)
        return Judgement(probs, ps, mean, a_wins, consistent, ties, 0)


PAIRS = [Judgment(f"q{i}", f"right {i}", f"wrong {i}") for i in range(40)]


def test_a_judge_blind_to_the_responses_scores_one_half_whatever_the_side():
    # Both orders give the same P(A): the score is exactly 1/2 -- a tie, counted one half,
    # whether the chosen response is shown first or second (both sides occur).
    for q in (1.0, 0.8, 0.5, 0.3):
        judge = FakeJudge(lambda a, b, q=q: q)
        out = evaluate_judge(judge, None, None, PAIRS, seed=0)
        assert out.accuracy == 0.5 and out.ties == len(PAIRS), (q, out)
        firsts = [a.startswith("right") for _, a, _ in judge.seen]
        assert 0 < sum(firsts) < len(PAIRS)
        assert out.chosen_first == np.mean(firsts)


def test_chosen_side_is_seeded_and_a_right_judge_scores_one():
    right = FakeJudge(lambda a, b: 0.9 if a.startswith("right") else 0.1)
    out = evaluate_judge(right, None, None, PAIRS, seed=1)
    assert out.accuracy == 1.0 and out.ties == 0
    sides = [a for _, a, _ in right.seen]
    again = FakeJudge(lambda a, b: 0.5)
    evaluate_judge(again, None, None, PAIRS, seed=1)
    assert sides == [a for _, a, _ in again.seen]
    # "always A" (P(A) = 1 in both orders) is a tie, not a win for whichever is shown first
    assert evaluate_judge(FakeJudge(lambda a, b: 1.0), None, None, PAIRS).accuracy == 0.5
    # the baselines are measured on the same pairs, shown the same way
    out = evaluate_judge(FakeJudge(lambda a, b: 0.9), None, None, PAIRS)
    assert out.baselines["first_shown"] == out.chosen_first
    assert set(out.baselines) >= {"longer", "first_shown", "larger_number", "increasing_list",
                                  "reuses_question_numbers", "best", "best_rule"}


def test_stratified_prompts_cover_every_family_and_level_for_the_tiny_preset():
    from sjjax import presets
    from sjjax.evaluation.sweep import prompt_stratum, stratified_prompts
    from sjjax.phases import evaluate, tournament
    from sjjax.presets import tiny
    cells = {f"{f}:{lv}" for f in tiny.TASKS["families"] for lv in tiny.TASKS["levels"]}

    def prompts_only(c):  # the preset's prompts, without drawing its SFT and pair data
        c.data.sources = tuple(dict(s, n_sft=0, n_pairs=0) for s in c.data.sources)
        return c

    c = prompts_only(presets.make("evaluate", "tiny"))
    prompts, _ = evaluate._heldout(c)
    chosen = evaluate.tournament_prompts(c, prompts)
    assert len(chosen) == c.evaluate.tournament_prompts
    assert {prompt_stratum(p) for p in chosen} == cells
    c = prompts_only(presets.make("tournament", "tiny"))
    chosen = tournament.select_prompts(c)
    assert len(chosen) == c.tournament.num_prompts
    counts = [sum(prompt_stratum(p) == cell for p in chosen) for cell in cells]
    assert max(counts) - min(counts) <= 1  # as even as the number allows
    assert chosen == tournament.select_prompts(c)  # seeded
    assert len(stratified_prompts(prompts[:3], 10, 0)) == 3


def test_sampled_quality_scores_every_reply_and_splits_by_stratum():
    """A fake responder: replies are fixed strings; the oracle checks them exactly. By hand:
    compare:1 has replies right 2 of 2, 1 of 2 -> 3/4; sort:1 right 0 of 2 -> 0; overall
    3/6."""
    import numpy as np
    from sjjax.data.records import Prompt
    from sjjax.evaluation import sampled_quality
    from sjjax.generation import Responses
    from sjjax.sampling import SamplingParams

    def prompt(family, answer):
        return Prompt(({"role": "user", "content": "q"},), "q",
                      {"family": family, "level": 1, "answer": answer})

    prompts = [prompt("compare", "7"), prompt("compare", "8"), prompt("sort", "1, 2")]
    replies = [["7", "7"], ["8", "3"], ["2, 1", "1"]]

    class FakeResponder:
        def reply(self, params, lora, messages, key, sampling, num_samples):
            assert num_samples == 2 and len(messages) == 3 and not sampling.greedy
            return Responses([[np.zeros(1)] * 2] * 3, np.ones((3, 2), np.int32), replies)

    oracle = lambda meta, text: float(text == meta["answer"])  # noqa: E731
    out = sampled_quality(FakeResponder(), prompts, None, oracle, SamplingParams(), 2,
                          policy_params=None, policy_lora=None)
    assert out["oracle_accuracy"] == 0.5
    assert out["oracle_accuracy_by_stratum"] == {"compare:1": 0.75, "sort:1": 0.0}
    assert out["samples_per_prompt"] == 2 and out["length_tokens"] == 1.0


def test_own_pairs_pairs_replies_as_the_self_judge_phase_does():
    """Replies (0, 1), (2, 3) of each prompt; by hand: prompt 7 -> ("7", "3") informative
    (chosen "7"), ("7", "7") identical; prompt 8 -> ("2", "1") both wrong, ("8", "9")
    informative (chosen "8"); a fifth reply has no partner and is left out."""
    from sjjax.data.records import Prompt
    from sjjax.evaluation import own_pairs

    def prompt(answer):
        return Prompt(({"role": "user", "content": f"q{answer}"},), f"q{answer}",
                      {"family": "compare", "level": 1, "numbers": [int(answer), 1],
                       "direction": "larger", "answer": answer},
                      source=f"synthetic:0:prompts:compare:1:{answer}")

    replies = [["The answer is 7.", "The answer is 3.", "The answer is 7.", " The answer is 7."],
               ["The answer is 2.", "The answer is 1.", "The answer is 9.", "The answer is 8.",
                "The answer is 5."]]
    judgments, counts = own_pairs([prompt("7"), prompt("8")], replies)
    assert [(j.chosen, j.rejected) for j in judgments] == [
        ("The answer is 7.", "The answer is 3."), ("The answer is 8.", "The answer is 9.")]
    assert (counts.informative, counts.identical, counts.both_wrong, counts.both_correct) == (
        2, 1, 1, 0)
    assert judgments[0].source.startswith("synthetic:0:prompts:compare:1")
