"""Self-judgment scores: the voting rule by hand, and SmolLM2 vs a direct PyTorch
computation with transformers."""

import numpy as np
import pytest

from sjjax.config import default_judge_templates
from sjjax.data.templates import JudgePromptBuilder, validate_judge_templates
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
    batch, _ = judge.build_batch(PAIRS[:2], rows=4)
    # the prefix ends where the first response starts; suffixes differ by order
    ab = judge.builder.prompt("helpfulness", *PAIRS[0])
    assert batch.prefix_tokens[0, -len(ab.prefix):].tolist() == ab.prefix
    assert batch.suffix_tokens[0, 0, -len(ab.suffix):].tolist() == ab.suffix
    ba = judge.builder.prompt("helpfulness", PAIRS[0][0], PAIRS[0][2], PAIRS[0][1])
    assert batch.suffix_tokens[0, 1, -len(ba.suffix):].tolist() == ba.suffix
    judge(params, None, PAIRS[:2])
    count = judge.compiled_count()
    judge(params, None, [(c, b, a) for c, a, b in PAIRS[:2]])
    assert judge.compiled_count() == count
