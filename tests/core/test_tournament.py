"""Tournament self-rejection with an oracle judge."""

import jax
import numpy as np
import pytest

from sjjax.tournament import run_tournament


def oracle(quality):
    calls = []

    def judge(matches):
        calls.append(len(matches))
        return np.array([quality[p][a] > quality[p][b] for p, a, b in matches])
    return judge, calls


@pytest.mark.parametrize("n", range(1, 18))
def test_best_of_n_always_wins_with_n_minus_1_matches(n):
    rng = np.random.default_rng(n)
    prompts = 5
    quality = [rng.permutation(n) for _ in range(prompts)]  # distinct qualities
    judge, calls = oracle(quality)
    result = run_tournament(jax.random.key(n), n, judge, num_prompts=prompts)
    assert [quality[p][w] for p, w in enumerate(result.winners)] == [n - 1] * prompts
    assert result.matches_per_prompt(prompts).tolist() == [n - 1] * prompts
    # every match of a round, across all prompts, is judged in one call
    assert len(calls) == int(np.ceil(np.log2(n))) if n > 1 else len(calls) == 0
    assert sum(calls) == prompts * (n - 1)


def test_mixed_candidate_counts_and_shuffling():
    quality = [np.arange(3), np.arange(8)[::-1].copy()]
    judge, _ = oracle(quality)
    result = run_tournament(jax.random.key(0), [3, 8], judge)
    assert result.winners.tolist() == [2, 0]
    first_round = [(m.a, m.b) for m in result.rounds[0] if m.prompt == 1]
    other = run_tournament(jax.random.key(1), [3, 8], oracle(quality)[0])
    assert first_round != [(m.a, m.b) for m in other.rounds[0] if m.prompt == 1]


def test_bye_goes_first_next_round():
    quality = [np.arange(5)]
    result = run_tournament(jax.random.key(3), 5, oracle(quality)[0])
    bye = (set(range(5)) - {x for m in result.rounds[0] for x in (m.a, m.b)}).pop()
    assert bye in (result.rounds[1][0].a, result.rounds[1][0].b)
