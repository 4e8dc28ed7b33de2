"""Self-judgment scores: the voting rule by hand, and SmolLM2 vs a direct PyTorch
computation with transformers."""

import numpy as np
import pytest

from sjjax.data.templates import (JudgePromptBuilder, default_judge_templates,
                                  validate_judge_templates)
from sjjax.judge import Judge, aggregate, naive_order_probs
from sjjax.model.loading import build_model
from sjjax.model.transformer import split_params


def test_score_is_mean_of_both_orders():
    # P(A | a first) = 0.8, P(A | b first) = 0.3 -> P(B | b first) = 0.7 -> score(a) = 0.75
    scores, mean, a_wins, consistent, ties = aggregate(np.array([[[0.8, 0.3]]]))
    np.testing.assert_allclose(scores, [[0.75]])
    assert a_wins.tolist() == [True] and consistent.tolist() == [[True]] and ties == 0
    # Position bias: A preferred in both orders -> inconsistent; score = (0.9 + 0.2) / 2.
    scores, _, a_wins, consistent, _ = aggregate(np.array([[[0.9, 0.8]]]))
    np.testing.assert_allclose(scores, [[0.55]])
    assert a_wins.tolist() == [True] and consistent.tolist() == [[False]]


def test_majority_vote_across_principles_with_tie_breaks():
    def probs(principle_scores):
        # order probs giving exactly these scores: P(A|a first) = s, P(A|b first) = 1 - s
        s = np.asarray(principle_scores, float)
        return np.stack([s, 1 - s], axis=-1)

    table = np.stack([
        probs([0.6, 0.6, 0.1]),    # a wins 2 of 3 despite a lower mean (0.433): vote decides
        probs([0.4, 0.45, 0.99]),  # b wins 2 of 3 despite a higher mean (0.613)
        probs([0.9, 0.2, 0.5]),    # 1-1 (0.5 is no win): tie broken by mean 0.533 -> a
        probs([0.6, 0.3, 0.5]),    # 1-1, mean 0.467 -> b
        probs([0.7, 0.3, 0.5]),    # 1-1, mean exactly 0.5 -> a (documented rule)
    ])
    scores, mean, a_wins, _, ties = aggregate(table)
    assert a_wins.tolist() == [True, False, True, False, True]
    assert ties == 3
    np.testing.assert_allclose(mean, [1.3 / 3, 1.84 / 3, 1.6 / 3, 1.4 / 3, 0.5])


PAIRS = [
    ("User: What is the capital of France?", "The capital of France is Paris.",
     "France's capital is Lyon, a city famous for food."),
    ("User: How do I boil an egg?\n\nAssistant: Do you want it soft or hard?\n\nUser: Hard.",
     "Boil it for about ten minutes, then cool it in cold water.",
     "I don't know."),
    ("User: Say hi.", "Hi!", "Hello there, how can I help you today?"),
]


@pytest.fixture(scope="module")
def smollm2_judge(smollm2):
    cfg, params, tokenizer = smollm2
    templates = default_judge_templates()
    templates["honesty"] = dict(templates["helpfulness"],
                                system="You are a strict judge of honesty.")
    builder = JudgePromptBuilder(tokenizer, validate_judge_templates(
        templates, ["helpfulness", "honesty"]))
    graphdef, p, _ = split_params(build_model(cfg, params))
    return Judge(graphdef, builder, batch_size=2, pad_id=tokenizer.pad_token_id), p


def test_judge_matches_pytorch_on_smollm2(smollm2_judge, smollm2_torch):
    torch = pytest.importorskip("torch")
    judge, params = smollm2_judge
    result = judge(params, None, PAIRS)
    a_id, b_id = judge.builder.token_ids
    expected = np.zeros((len(PAIRS), 2, 2))
    for i, (context, a, b) in enumerate(PAIRS):
        for j, principle in enumerate(judge.principles):
            for order, (first, second) in enumerate(((a, b), (b, a))):
                ids = judge.builder.prompt(principle, context, first, second).ids
                with torch.no_grad():
                    logits = smollm2_torch(torch.tensor(ids[None], dtype=torch.long)).logits[0, -1]
                expected[i, j, order] = torch.softmax(logits[[a_id, b_id]], -1)[0].item()
    err = np.abs(result.order_probs - expected).max()
    assert err < 1e-4, f"max error {err}"
    scores, mean, a_wins, consistent, _ = aggregate(expected)
    np.testing.assert_allclose(result.principle_scores, scores, atol=1e-4)
    assert result.a_wins.tolist() == a_wins.tolist()
    assert result.consistent.tolist() == consistent.tolist()


def test_shared_prefix_equals_full_prompts(smollm2_judge, smollm2):
    judge, params = smollm2_judge
    shared = judge(params, None, PAIRS).order_probs
    full = naive_order_probs(judge.graphdef, params, judge.builder, PAIRS,
                             pad_id=smollm2[2].pad_token_id)
    np.testing.assert_allclose(shared, full, atol=2e-5)


def test_batch_layout_and_no_recompilation(smollm2_judge):
    judge, params = smollm2_judge
    batch, _ = judge.build_batch(PAIRS[:2], rows=6)
    rows = lambda tokens, mask: [t[m].tolist() for t, m in zip(tokens, mask)]  # noqa: E731
    prefixes = rows(batch.prefix_tokens, batch.prefix_mask)
    for i, (context, a, b) in enumerate(PAIRS[:2]):
        for p, principle in enumerate(judge.principles):
            r = i * len(judge.principles) + p  # row of (pair i, principle p)
            ab = judge.builder.prompt(principle, context, a, b)
            ba = judge.builder.prompt(principle, context, b, a)
            # shared stage + each order's stage = that order's full prompt, token for token
            for order, full in enumerate((ab, ba)):
                suffix = batch.suffix_tokens[r, order][batch.suffix_mask[r, order]].tolist()
                assert prefixes[r] + suffix == full.ids.tolist()
            assert ab.prefix[:len(prefixes[r])] == prefixes[r]  # only shared tokens shared
    assert batch.prefix_mask.shape[1] > 0, "these pairs should share a computed prefix"
    judge(params, None, PAIRS[:2])
    count = judge.compiled_count()
    judge(params, None, [(c, b, a) for c, a, b in PAIRS[:2]])
    assert judge.compiled_count() == count


def test_split_point_minimises_padded_tokens():
    from sjjax.judge import split_point
    # One row with a long context, one with long responses: splitting at the responses
    # would pad both stages; spilling part of the long context into the second stage
    # (computed twice) costs less.
    prefixes, suffixes = [[0] * 200, [0] * 40], [40, 200]
    tp, ts = split_point(prefixes, suffixes, rows=2, multiple=8)
    cost = 2 * tp + 4 * ts
    assert cost == min(2 * t + 4 * max(s + max(0, len(p) - t)
                                        for p, s in zip(prefixes, suffixes))
                       for t in range(0, 201, 8))
    assert cost < 2 * 200 + 4 * 200  # the naive split: pad both stages to their maxima
    # identical lengths: the whole shared part is computed once
    assert split_point([[0] * 64] * 3, [32] * 3, rows=3, multiple=16) == (64, 32)
