"""Losses against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sjjax.losses import dpo_loss, masked_cross_entropy, sequence_logprobs, token_logprobs

# One row, vocabulary of 3, tokens [2, 0, 1]; logits at positions 0 and 1 predict tokens 0, 1.
LOGITS = jnp.array([[[0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [5.0, 5.0, 5.0]]])
TOKENS = jnp.array([[2, 0, 1]])
# log p(0 | pos 0) = 0 - log(1 + e + e^2) = -2.40760596; log p(1 | pos 1) = -log 3 = -1.09861229
LP0, LP1 = -math.log(1 + math.e + math.e ** 2), -math.log(3)


def test_token_logprobs_by_hand():
    lp = np.asarray(token_logprobs(LOGITS, TOKENS))
    np.testing.assert_allclose(lp, [[0.0, LP0, LP1]], rtol=1e-6)
    assert abs(LP0 - (-2.40760596)) < 1e-7


def test_masked_cross_entropy_token_and_example_normalisation():
    logits = jnp.concatenate([LOGITS, LOGITS])
    tokens = jnp.concatenate([TOKENS, TOKENS])
    mask = jnp.array([[False, True, True], [False, False, True]])
    loss, n = masked_cross_entropy(logits, tokens, mask, "token")
    assert float(n) == 3
    np.testing.assert_allclose(loss, -(LP0 + LP1 + LP1) / 3, rtol=1e-6)
    loss, _ = masked_cross_entropy(logits, tokens, mask, "example")
    np.testing.assert_allclose(loss, (-(LP0 + LP1) / 2 - LP1) / 2, rtol=1e-6)
    # weights: row 2 counts 3x (its single token carries weight 3); the denominator
    # counts tokens (rows) unweighted
    loss, _ = masked_cross_entropy(logits, tokens, mask, "token", weights=jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(loss, -(LP0 + LP1 + 3 * LP1) / 3, rtol=1e-6)
    loss, _ = masked_cross_entropy(logits, tokens, mask, "example", weights=jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(loss, (-(LP0 + LP1) / 2 - 3 * LP1) / 2, rtol=1e-6)


def test_weights_do_not_cancel_in_a_batch_of_one_kind():
    """A batch whose rows all carry weight w (a length bucket of judgments only) has w
    times the unweighted loss, under both normalisations: a weighted mean would give
    the unweighted loss back, and the weight would do nothing."""
    logits = jnp.concatenate([LOGITS, LOGITS])
    tokens = jnp.concatenate([TOKENS, TOKENS])
    mask = jnp.array([[False, True, True], [False, False, True]])
    for normalize in ("token", "example"):
        plain, _ = masked_cross_entropy(logits, tokens, mask, normalize)
        weighted, _ = masked_cross_entropy(logits, tokens, mask, normalize,
                                           weights=jnp.array([4.0, 4.0]))
        np.testing.assert_allclose(weighted, 4 * plain, rtol=1e-6)


def test_sequence_logprobs_sum_and_mean():
    mask = jnp.array([[False, True, True]])
    np.testing.assert_allclose(sequence_logprobs(LOGITS, TOKENS, mask), [LP0 + LP1], rtol=1e-6)
    np.testing.assert_allclose(sequence_logprobs(LOGITS, TOKENS, mask, "mean"),
                               [(LP0 + LP1) / 2], rtol=1e-6)


# policy log-probs (chosen, rejected) and reference log-probs; h = (−1+1.5) − (−2+1.5) = 1.
PAIR = dict(policy_chosen=jnp.array([-1.0]), policy_rejected=jnp.array([-2.0]),
            ref_chosen=jnp.array([-1.5]), ref_rejected=jnp.array([-1.5]))


@pytest.mark.parametrize("loss_type,expected", [
    ("sigmoid", 0.64439666),   # -log sigmoid(0.1) = log(1 + e^-0.1)
    ("hinge", 0.9),            # max(0, 1 - 0.1 * 1)
    ("ipo", 16.0),             # (1 - 1 / (2 * 0.1))^2 = (1 - 5)^2
])
def test_dpo_losses_by_hand(loss_type, expected):
    out = dpo_loss(**PAIR, beta=0.1, loss_type=loss_type)
    np.testing.assert_allclose(out.loss, expected, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["rewards/chosen"], 0.05, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["rewards/rejected"], -0.05, rtol=1e-6)
    np.testing.assert_allclose(out.metrics["rewards/margins"], 0.1, rtol=1e-6)
    assert float(out.metrics["rewards/accuracies"]) == 1.0


def test_dpo_invalid_pairs_are_excluded_everywhere():
    two = {k: jnp.concatenate([v, jnp.array([0.0])]) for k, v in PAIR.items()}
    out = dpo_loss(**two, beta=0.1, valid=jnp.array([True, False]))
    np.testing.assert_allclose(out.loss, 0.64439666, rtol=1e-6)
    assert float(out.metrics["pairs/valid"]) == 1
    assert float(out.metrics["rewards/accuracies"]) == 1.0
    assert float(out.losses[1]) == 0.0


def test_dpo_label_smoothing():
    out = dpo_loss(**PAIR, beta=0.1, label_smoothing=0.2)
    expected = 0.8 * math.log(1 + math.exp(-0.1)) + 0.2 * math.log(1 + math.exp(0.1))
    np.testing.assert_allclose(out.loss, expected, rtol=1e-6)


def test_dpo_nll_term_by_hand():
    """RPO: each pair's loss gains alpha x the chosen response's per-token NLL, an
    invalid pair still counts nowhere, and the NLL's gradient reaches only log pi(y_w)."""
    two = {k: jnp.concatenate([v, jnp.array([-9.0])]) for k, v in PAIR.items()}
    tokens = jnp.array([4, 3])
    out = dpo_loss(**two, beta=0.1, valid=jnp.array([True, False]), nll_weight=0.5,
                   chosen_tokens=tokens)
    # pair 0: -log sigma(0.1 * 1) + 0.5 * (1.0 / 4)
    np.testing.assert_allclose(out.loss, math.log(1 + math.exp(-0.1)) + 0.125, rtol=1e-6)
    np.testing.assert_allclose(out.chosen_nll, [0.25, 3.0], rtol=1e-6)
    np.testing.assert_allclose(out.metrics["nll/chosen"], 0.25, rtol=1e-6)
    assert float(out.losses[1]) == 0.0

    def loss(chosen, alpha):
        return dpo_loss(chosen, PAIR["policy_rejected"], PAIR["ref_chosen"],
                        PAIR["ref_rejected"], beta=0.1, nll_weight=alpha,
                        chosen_tokens=jnp.array([4])).loss
    extra = (jax.grad(loss)(PAIR["policy_chosen"], 0.5)
             - jax.grad(loss)(PAIR["policy_chosen"], 0.0))
    np.testing.assert_allclose(extra, [-0.5 / 4], rtol=1e-6)  # d(alpha * -x / n)/dx
    with pytest.raises(ValueError, match="chosen_tokens"):
        dpo_loss(**PAIR, nll_weight=1.0)


@pytest.mark.parametrize("tied", [True, False])
def test_chunked_loss_equals_unchunked(tied):
    """Values and gradients (hidden states and output projection) of the chunked token
    log-probs equal the unchunked ones, with T not a multiple of the chunk."""
    from sjjax.losses import (chunked_token_logprobs, cross_entropy_terms,
                              cross_entropy_terms_from_logprobs)
    b, t, d, v = 2, 11, 8, 32
    keys = jax.random.split(jax.random.key(0), 4)
    hidden = jax.random.normal(keys[0], (b, t, d))
    weight = jax.random.normal(keys[1], (v, d) if tied else (d, v)) * 0.3
    tokens = jax.random.randint(keys[2], (b, t), 0, v)
    loss_mask = jax.random.bernoulli(keys[3], 0.6, (b, t)).at[:, 0].set(False)
    spec = "btd,vd->btv" if tied else "btd,dv->btv"

    def loss(hidden, weight, chunk):
        def project(h):
            return jnp.einsum(spec.replace("t", "c"), h, weight)
        if chunk is None:  # the reference: logits [B, T, V] whole
            num, den = cross_entropy_terms(project(hidden), tokens, loss_mask)
        else:
            logp = chunked_token_logprobs(hidden, tokens, project, chunk)
            num, den = cross_entropy_terms_from_logprobs(logp, loss_mask)
        return num / den

    fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)
    ref = fn(hidden, weight, None)
    for chunk in (0, 4):  # 4: three chunks, the last one padded
        got = fn(hidden, weight, chunk)
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)
        for g, r in zip(got[1], ref[1]):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


def test_dpo_step_adds_each_valid_pair_s_chosen_nll():
    """The DPO train step with nll_weight: its loss minus the plain step's loss is alpha x
    the mean over valid pairs of -log pi(y_w) / |y_w|, with log pi from the full-logit
    path (sequence_logprobs) and |y_w| counted by hand from the chosen rows' loss masks."""
    import optax

    from sjjax.losses import sequence_logprobs
    from sjjax.model.config import ModelConfig
    from sjjax.model.transformer import init_model, merge_params, split_params
    from sjjax.train.steps import LossSpec, TrainState, make_dpo_step

    cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=1,
                      num_heads=2, num_kv_heads=1, head_dim=16)
    graphdef, params, _ = split_params(init_model(cfg, 0))
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(1, 64, (4, 8)), jnp.int32)  # 2 chosen, then 2 rejected
    mask = jnp.ones((4, 8), bool)
    loss_mask = jnp.zeros((4, 8), bool).at[0, 3:].set(True).at[1, 5:].set(True) \
        .at[2, 4:].set(True).at[3, 2:].set(True)
    valid = jnp.array([True, False])
    batch = {"tokens": tokens[None], "mask": mask[None], "loss_mask": loss_mask[None],
             "valid": valid[None]}
    optimizer = optax.sgd(0.0)
    state = TrainState(params, optimizer.init(params), jnp.int32(0), jnp.zeros(2, jnp.uint32))
    losses = {}
    for alpha in (0.0, 0.7):
        step = make_dpo_step(graphdef, optimizer, LossSpec(nll_weight=alpha, loss_chunk=0))
        losses[alpha] = float(step(state, {}, params, batch)[1]["loss"])
    model = merge_params(graphdef, params)
    logits, _ = model(tokens, mask)
    chosen = sequence_logprobs(logits, tokens, loss_mask)[:2]
    expected = 0.7 * float(-chosen[0] / 5)  # pair 0 only (pair 1 invalid); |y_w| = 8 - 3
    np.testing.assert_allclose(losses[0.7] - losses[0.0], expected, rtol=1e-4)
