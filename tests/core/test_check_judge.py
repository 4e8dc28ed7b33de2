"""A judge that writes its check before deciding (a template with `check`): the token
layout is the same in training and judging, the check is the model's greedy writing
(against a by-hand argmax decoder), and the decision is read after the check (against a
by-hand full forward)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from sjjax.data import synthetic
from sjjax.data.examples import encode_judgment
from sjjax.data.records import Judgment
from sjjax.data.templates import (COMPACT_JUDGE_TEMPLATE, COMPACT_JUDGE_TEMPLATE_CHECK,
                                  JudgePromptBuilder, TemplateError, validate_judge_templates)
from sjjax.errors import ConfigError
from sjjax.judge import Judge
from sjjax.model.transformer import merge_params

CONTEXT = "What is the largest of 58, 23, 61, 85, 42?"
PAIRS = [(CONTEXT, "The answer is 85.", "The answer is 83."),
         ("Sort 3, 1, 2 in ascending order.", "1, 2, 3", "1, 3")]


@pytest.fixture(scope="module")
def policy(tiny_policy):
    return tiny_policy


def _judge_config(templates, check_tokens=12):
    return ml_collections.ConfigDict(dict(
        tokens=(" A", " B"), templates=templates, principles=("helpfulness",), batch_size=2,
        max_length=256, check_tokens=check_tokens, score="pair_softmax",
        principle_vote="abstain", tie_break="a"))


def _builder(policy, templates=COMPACT_JUDGE_TEMPLATE_CHECK):
    return JudgePromptBuilder.from_config(policy.tokenizer, _judge_config(templates))


def test_training_target_is_check_then_prefix_then_decision(policy):
    builder = _builder(policy)
    tok = policy.tokenizer
    encoded, prompt = builder.training_example(
        "helpfulness", CONTEXT, "The answer is 85.", "The answer is 83.", chosen_first=False,
        rationale_chosen="85 is in the question and the largest.",
        rationale_rejected="83 is not in the question.")
    ids, mask = encoded.tokens.tolist(), encoded.loss_mask.tolist()
    n = len(prompt.ids)
    assert ids[:n] == list(prompt.ids) and not any(mask[:n]) and all(mask[n:])
    # The prompt ends with the assistant header: the check is the model's to write.
    assert tok.decode(prompt.ids).endswith("<|im_start|>assistant\n")
    target = tok.decode(ids[n:])
    assert target == ("A: 83 is not in the question.\nB: 85 is in the question and the "
                      "largest.\nAnswer: B<|im_end|>"), target
    # Judging sees the same tokens: the prompt, the check's ids, then the decision.
    check = "A: 83 is not in the question.\nB: 85 is in the question and the largest.\n"
    decision_at = n + len(builder.check_ids("helpfulness", check))
    assert ids[:decision_at] == list(prompt.ids) + builder.check_ids("helpfulness", check)
    assert ids[decision_at] == builder.token_ids[1]


def test_check_templates_are_validated():
    base = COMPACT_JUDGE_TEMPLATE["helpfulness"]
    with pytest.raises(TemplateError, match="rationale.*or a check.*not both"):
        validate_judge_templates({"helpfulness": dict(base, check="{rationale_a}{rationale_b}",
                                                      rationale="{rationale_a}{rationale_b}")},
                                 ["helpfulness"])
    with pytest.raises(TemplateError, match=r"templates.helpfulness.check: missing \{rationale_b\}"):
        validate_judge_templates({"helpfulness": dict(base, check="A: {rationale_a}")},
                                 ["helpfulness"])


def test_judgment_without_checks_is_refused_by_a_check_template(policy):
    judgment = Judgment(CONTEXT, "The answer is 85.", "The answer is 83.", "helpfulness",
                        source="pairs.jsonl:7")
    with pytest.raises(ConfigError, match=r"pairs.jsonl:7: .*check needs each response's check"):
        encode_judgment(_builder(policy), judgment, 256)


def test_synthetic_judgments_carry_their_checks(policy):
    tasks = synthetic.generate(0, 2, "train", ("minmax",), (1,), stream="pairs")
    judgment = synthetic.shortcut_proof_pairs(tasks, 0)[0].judgment("helpfulness", True)
    (first, _), (second, _) = encode_judgment(_builder(policy), judgment, 256)
    text = policy.tokenizer.decode(first.tokens[first.loss_mask])
    assert text.startswith("A: ") and "\nB: " in text and "\nAnswer: A" in text


def _greedy_by_hand(policy, ids, steps, eos):
    """Argmax decoding with a full forward per token (no cache, no sampler)."""
    model = merge_params(policy.graphdef, policy.params, policy.lora)
    out = []
    for _ in range(steps):
        tokens = jnp.asarray([list(ids) + out], jnp.int32)
        logits, _ = model(tokens, jnp.ones_like(tokens, bool), logits="last")
        out.append(int(jnp.argmax(logits[0, -1] if logits.ndim == 3 else logits[0])))
        if out[-1] in eos:
            break
    return [t for t in out if t not in eos]


def _decision_prob_by_hand(policy, builder, ids):
    model = merge_params(policy.graphdef, policy.params, policy.lora)
    tokens = jnp.asarray([list(ids)], jnp.int32)
    logits, _ = model(tokens, jnp.ones_like(tokens, bool), logits="last")
    last = np.asarray(logits, np.float64).reshape(-1, logits.shape[-1])[-1]
    pair = last[list(builder.token_ids)]
    pair = np.exp(pair - pair.max())
    return pair[0] / pair.sum()


def test_judge_writes_its_check_then_decides(policy):
    judge = Judge.from_config(policy.graphdef, policy, _judge_config(COMPACT_JUDGE_TEMPLATE_CHECK))
    result = judge(policy.params, policy.lora, PAIRS)
    assert result.order_probs.shape == (2, 1, 2)
    eos = set(policy.eos_ids)
    for i, (context, a, b) in enumerate(PAIRS):
        for order, (first, second) in enumerate(((a, b), (b, a))):
            prompt = judge._prompts([(context, first, second)])[0][0]
            check = _greedy_by_hand(policy, prompt.ids, 12, eos)
            assert policy.tokenizer.decode(check) == result.checks[i][0][order]
            expected = _decision_prob_by_hand(
                policy, judge.builder, list(prompt.ids) + check + judge.builder.check_ids(
                    "helpfulness", ""))
            np.testing.assert_allclose(result.order_probs[i, 0, order], expected, atol=2e-5)


class _Written:
    """A checker stand-in that 'writes' given ids (check, assistant_prefix, decision):
    writings[i % len(writings)] for prompt i (prompts alternate a first, b first)."""

    def __init__(self, writings, eos_ids, max_new_tokens=12):
        self.writings, self.eos_ids = writings, eos_ids
        self.sampler = type("S", (), {"max_new_tokens": max_new_tokens})()

    def sample(self, params, lora, prompts, key, sampling, use_lora=True):
        return type("R", (), {"tokens": [[np.asarray(self.writings[i % len(self.writings)])]
                                         for i in range(len(prompts))]})()


def test_the_check_stops_at_assistant_prefix(policy):
    builder = _builder(policy)
    # The two orders write checks of different lengths (85 is right / a longer one).
    checks = [builder.check_ids("helpfulness", "A: 85 is right.\nB: 83 is wrong.\n"),
              builder.check_ids("helpfulness", "A: 83 is not in the question at all.\n"
                                               "B: 85 is in the question and the largest.\n")]
    after = builder.check_ids("helpfulness", "")
    eot = policy.tokenizer.eos_token_id
    # check, "Answer:", decision, end of turn
    writings = [checks[0] + [builder.token_ids[0], eot], checks[1] + [builder.token_ids[1], eot]]
    judge = Judge(policy.graphdef, builder, batch_size=2, max_length=256,
                  pad_id=policy.tokenizer.pad_token_id, checker=_Written(writings, (eot,)))
    assert after and all(c[-len(after):] == after for c in checks)
    written = judge.write_checks(policy.params, policy.lora, PAIRS[:1], rows=2)
    assert written == [(checks[0][:-len(after)], checks[1][:-len(after)])]
    result = judge(policy.params, policy.lora, PAIRS[:1])
    for order, prompt in enumerate(judge._prompts(PAIRS[:1])[0]):
        expected = _decision_prob_by_hand(policy, builder, list(prompt.ids) + checks[order])
        np.testing.assert_allclose(result.order_probs[0, 0, order], expected, atol=2e-5)
    # A judge that never writes assistant_prefix: all it wrote is its check.
    judge.checker = _Written([[5, 6, 7, eot]], (eot,))
    assert judge.write_checks(policy.params, policy.lora, PAIRS[:1]) == [([5, 6, 7], [5, 6, 7])]


def test_a_check_template_needs_a_checker(policy):
    with pytest.raises(ValueError, match="needs a checker"):
        Judge(policy.graphdef, _builder(policy))


def test_written_checks_are_scored_against_the_true_ones(policy):
    from types import SimpleNamespace

    from sjjax.evaluation.judge_eval import _check_scores
    builder = _builder(policy)
    judge = SimpleNamespace(builder=builder, principles=builder.principles)
    judgments = [Judgment(CONTEXT, "The answer is 85.", "The answer is 83.", "helpfulness",
                          "85 is right.", "83 is not in the question."),
                 Judgment(CONTEXT, "The answer is 85.", "The answer is 61.", "helpfulness",
                          "85 is right.", "61 is small."),
                 Judgment(CONTEXT, "The answer is 85.", "The answer is 60.")]  # no checks
    first = np.array([True, False, True])
    right = "A: 85 is right.\nB: 83 is not in the question.\n"
    flipped = "A: 83 is not in the question.\nB: 85 is right.\n"
    # Pair 0 (chosen shown as a): both orders right. Pair 1 (chosen shown as b): the
    # order with b first is wrong.
    result = SimpleNamespace(checks=[[[right, flipped]],
                                     [["A: 61 is small.\nB: 85 is right.\n", "wrong"]],
                                     [["x", "y"]]])
    scores = _check_scores(judge, result, judgments, first, np.array([1.0, 0.0, 1.0]))
    assert scores["check_accuracy"] == 0.75
    assert scores["accuracy_when_checks_right"] == 1.0  # pair 0 only
    assert scores["check_examples"][1]["true"][1] == "A: 85 is right.\nB: 61 is small.\n"


def test_own_pairs_carry_the_true_checks_when_asked():
    from sjjax.evaluation import own_pairs
    prompt = synthetic.generate(0, 1, "heldout", ("minmax",), (1,), stream="prompts",
                                directions={"minmax": ("largest",)})[0].prompt()
    numbers = sorted(prompt.meta["items"])
    right, wrong = f"The answer is {numbers[-1]}.", "The answer is 1000."
    (judgment,), counts = own_pairs([prompt], [[wrong, right]], rationales=True)
    assert counts.informative == 1 and judgment.chosen == right
    assert judgment.rationale_rejected == "1000 is not in the question."
    assert judgment.rationale_chosen == f"{numbers[-1]} is in the question and the largest."
    (plain,), _ = own_pairs([prompt], [[wrong, right]])
    assert plain.rationale_chosen is None


def test_jsft_step_logs_the_whole_judgment_targets_loss(policy):
    """judge_loss reads a judgment's first target token (for a check template, the
    check's "A"); judge_target_loss is the per-token NLL of the whole target, against a
    hand computation from the model's logits."""
    import jax
    import optax

    from sjjax.train.steps import LossSpec, TrainState, make_sft_step
    builder = _builder(policy)
    encoded, _ = builder.training_example(
        "helpfulness", CONTEXT, "The answer is 85.", "The answer is 83.", chosen_first=True,
        rationale_chosen="85 is right.", rationale_rejected="83 is not in the question.")
    tokens = np.zeros((1, 2, 128), np.int32)
    loss_mask = np.zeros((1, 2, 128), bool)
    n = len(encoded.tokens)
    tokens[0, 0, :n], loss_mask[0, 0, :n] = encoded.tokens, encoded.loss_mask
    tokens[0, 1, :n], loss_mask[0, 1, n - 3:n] = encoded.tokens, True  # an "SFT" row
    mask = np.zeros_like(loss_mask)
    mask[0, :, :n] = True
    batch = dict(tokens=tokens, mask=mask, loss_mask=loss_mask,
                 kind=np.array([[1, 0]], np.int32))
    optimizer = optax.sgd(0.0)
    state = TrainState(policy.params, optimizer.init(policy.params), jnp.zeros((), jnp.int32),
                       jnp.zeros((2,), jnp.uint32))
    _, metrics = jax.jit(make_sft_step(policy.graphdef, optimizer, LossSpec()))(
        state, {}, batch)
    model = merge_params(policy.graphdef, policy.params, policy.lora)
    logits, _ = model(jnp.asarray(tokens[0, :1, :n]), jnp.ones((1, n), bool))
    logp = np.asarray(jax.nn.log_softmax(np.asarray(logits, np.float64)[0], -1))
    targets = np.flatnonzero(encoded.loss_mask)
    nll = -logp[targets - 1, encoded.tokens[targets]]
    np.testing.assert_allclose(float(metrics["judge_target_loss"]), nll.mean(), rtol=1e-4)
    np.testing.assert_allclose(float(metrics["judge_loss"]), nll[0], rtol=1e-4)


def test_bench_decisive_tokens_against_a_prefix_forward(policy):
    """bench/judge_checks.py's teacher-forced measure: per true check line, P(the token
    after its first " is"), against the model run on the target's prefix up to it."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
    from judge_checks import decisive_tokens

    builder = _builder(policy)
    pair = Judgment(CONTEXT, "The answer is 85.", "The answer is 83.",
                    rationale_chosen="85 is in the question and the largest.",
                    rationale_rejected="83 is not in the question.")
    out = decisive_tokens(policy, builder, [pair], [True], max_length=None)
    # shown as is (chosen first), then swapped: the lines of A then B in each
    assert [(x["about"], x["true"]) for x in out] == [
        ("right", "N is in the question and the largest."), ("wrong", "N is not in the question."),
        ("wrong", "N is not in the question."), ("right", "N is in the question and the largest.")]
    encoded, _ = builder.training_example("helpfulness", CONTEXT, pair.chosen, pair.rejected,
                                          True, pair.rationale_chosen, pair.rationale_rejected)
    ids = encoded.tokens.tolist()
    model = merge_params(policy.graphdef, policy.params, policy.lora)
    tok = policy.tokenizer
    is_at = [i for i in np.flatnonzero(encoded.loss_mask) if tok.decode([ids[i]]) == " is"]
    for x, pos in zip(out[:2], is_at[:2]):  # the first " is" of each line: "85 is", "83 is"
        logits, _ = model(jnp.asarray([ids[:pos + 1]]), jnp.ones((1, pos + 1), bool))
        p = np.asarray(jax.nn.softmax(np.asarray(logits, np.float64)[0, -1]))
        np.testing.assert_allclose(x["p"], p[ids[pos + 1]], rtol=1e-4)
        assert x["argmax_ok"] == (p.argmax() == ids[pos + 1])
