"""The oracle controls of the self-judge phase (config.self_judge.judge = oracle |
oracle_noisy) and the question-blind baselines it logs beside the judge."""

import math
import zlib

import numpy as np
import pytest

from sjjax.config import ConfigError
from sjjax.phases import run_phase, self_judge
from sjjax.phases.self_judge import oracle_labels, shortcut_metrics
from tests.phases.tiny_config import small


def _scores(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 2)) < 0.5).astype(float)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.3, 0.5])
def test_oracle_noisy_agrees_with_the_oracle_one_minus_p_of_the_time(p):
    scores = _scores(20000)
    identical = np.zeros(len(scores), bool)
    identical[::7] = True
    a_wins, valid, flipped = oracle_labels(scores, identical, p, seed=0, step=3)
    assert np.array_equal(valid, (scores[:, 0] != scores[:, 1]) & ~identical)
    agree = a_wins[valid] == (scores[valid, 0] > scores[valid, 1])
    n = int(valid.sum())
    bound = 4 * math.sqrt(max(p * (1 - p), 1e-12) / n)  # binomial, 4 sigma
    assert abs(agree.mean() - (1 - p)) <= bound + 1e-12, (agree.mean(), p, n)
    assert np.array_equal(~agree, flipped[valid])


def test_oracle_flips_are_seeded_per_step():
    scores, same = _scores(500), np.zeros(500, bool)
    a = oracle_labels(scores, same, 0.3, seed=1, step=5)[0]
    assert np.array_equal(a, oracle_labels(scores, same, 0.3, seed=1, step=5)[0])
    assert not np.array_equal(a, oracle_labels(scores, same, 0.3, seed=1, step=6)[0])


def test_shortcut_metrics_on_hand_made_own_pairs():
    q = ["Which number is larger, 61 or 85?"] * 3
    a = ["The answer is 85.", "The answer is 86.", "The answer is 61 or 85."]
    b = ["The answer is 86.", "The answer is 85.", "The answer is 85."]
    scores = np.array([[1, 0], [0, 1], [0, 1]], float)
    out = shortcut_metrics(q, a, b, scores, np.array([True, True, True]),
                           np.array([True, False, True]))
    assert out["oracle/shortcut_agreement/larger_number"] == (0 + 0 + 0.5) / 3
    assert out["oracle/shortcut_agreement/reuses_question_numbers"] == (1 + 1 + 0) / 3
    assert out["oracle/shortcut_agreement_best"] == 2 / 3
    # the judge (a, b, a) vs the best rule's votes (reuse: a, b, a)
    assert out["oracle/judge_shortcut_agreement"] == 1.0


def test_oracle_judges_need_a_source_with_an_oracle(tmp_path):
    c = small("self_judge", str(tmp_path), **{"self_judge.judge": "oracle"})
    self_judge.validate(c)
    c.data.sources = (dict(format="preference_jsonl", path=str(tmp_path / "x.jsonl")),)
    with pytest.raises(ConfigError, match=r"config\.self_judge\.judge"):
        self_judge.validate(c)
    c = small("self_judge", str(tmp_path), **{"self_judge.judge": "oracle_noisy",
                                              "self_judge.oracle_flip": 1.5})
    with pytest.raises(ConfigError, match=r"config\.self_judge\.oracle_flip"):
        self_judge.validate(c)


def test_a_tiny_self_judge_run_with_the_oracle_judge(tmp_path, monkeypatch):
    """The run completes and the oracle judge agrees with the oracle on every informative
    pair. An untrained model's samples are all wrong by the task oracle, so the run's
    oracle is replaced by one that calls about half of all responses right (a hash of
    the text): informative pairs then exist, and only they enter the DPO loss."""
    from sjjax.metrics import read_metrics

    def oracle(meta, text):
        return float(zlib.crc32(text.encode()) % 2)

    monkeypatch.setattr(self_judge, "load_oracle", lambda config: oracle)
    c = small("self_judge", str(tmp_path), **{"self_judge.steps": 3, "model.source": "tiny",
                                              "self_judge.judge": "oracle"})
    run_phase(c)
    rows = [r for r in read_metrics(c.run_dir, "self_judge") if "oracle/judge_agreement" in r]
    assert len(rows) == 3
    informative = [r for r in rows if r["oracle/informative_pairs"] > 0]
    assert informative
    for r in informative:
        assert r["oracle/judge_agreement"] == 1.0
        assert r["pairs/with_preference"] == r["oracle/informative_pairs"]
        assert 0.0 <= r["oracle/shortcut_agreement_best"] <= 1.0
        assert {f"oracle/shortcut_agreement/{k}" for k in
                ("longer", "first_shown", "larger_number", "increasing_list",
                 "reuses_question_numbers")} <= set(r)
        assert math.isfinite(r["loss"])


@pytest.mark.parametrize("valid,multiple,expected_keep,expected_valid", [
    ([0, 1, 1, 0, 1], 1, [1, 2, 4, 0], [1, 1, 1, 0]),     # 3 valid -> 4 rows
    ([1] * 5 + [0] * 27, 1, [0, 1, 2, 3, 4, 0, 0, 0], [1] * 5 + [0] * 3),
    ([1] * 8, 1, list(range(8)), [1] * 8),                  # all valid: unchanged
    ([0] * 8, 2, [0, 0], [0, 0]),                           # none valid: one padded micro
    ([1] + [0] * 9, 4, [0, 0, 0, 0], [1, 0, 0, 0]),         # a multiple of micro x devices
])
def test_only_pairs_with_a_preference_become_dpo_rows(valid, multiple, expected_keep,
                                                      expected_valid):
    keep, keep_valid = self_judge.preference_rows(np.array(valid, bool), multiple)
    assert keep.tolist() == expected_keep
    assert keep_valid.tolist() == [bool(v) for v in expected_valid]


def test_dropping_pairs_without_a_preference_leaves_the_dpo_loss_unchanged():
    """The loss and its statistics over (all pairs, mask) equal those over the kept
    rows: pairs without a preference contribute nothing either way."""
    import jax.numpy as jnp
    from sjjax.losses import dpo_loss
    rng = np.random.default_rng(0)
    pc, pr, rc, rr = (jnp.asarray(rng.normal(size=12)) for _ in range(4))
    valid = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0], bool)
    keep, kv = self_judge.preference_rows(valid, 1)
    full = dpo_loss(pc, pr, rc, rr, 0.1, valid=jnp.asarray(valid))
    kept = dpo_loss(pc[keep], pr[keep], rc[keep], rr[keep], 0.1, valid=jnp.asarray(kv))
    np.testing.assert_allclose(float(full.loss), float(kept.loss), rtol=1e-6)
    for k in full.metrics:
        np.testing.assert_allclose(float(full.metrics[k]), float(kept.metrics[k]), rtol=1e-6)
