"""The compiled sampler on a tiny random model: distributions, determinism, EOS, shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sjjax.model import ModelConfig, init_model, split_params
from sjjax.sampling import (Sampler, SamplingParams, choose_tokens, draw, forward_logits,
                            sampling_logits)

CFG = ModelConfig(vocab_size=24, hidden_size=32, intermediate_size=48, num_layers=2,
                  num_heads=4, num_kv_heads=2, head_dim=8, initializer_range=0.5)


@pytest.fixture(scope="module")
def tiny():
    graphdef, params, _ = split_params(init_model(CFG, seed=0))
    return graphdef, params


def reference_distribution(logits, temperature=1.0, top_k=0, top_p=1.0):
    """An independent numpy implementation of temperature -> top-k -> top-p."""
    z = np.asarray(logits, np.float64) / temperature
    order = np.argsort(-z)
    keep = np.zeros_like(z, bool)
    keep[order[:top_k] if top_k else order] = True
    p = np.exp(z - z.max()) * keep
    p /= p.sum()
    if top_p < 1.0:
        kept, mass = [], 0.0
        for i in np.argsort(-p):
            if mass >= top_p or p[i] == 0:
                break
            kept.append(i)
            mass += p[i]
        mask = np.zeros_like(keep)
        mask[kept] = True
        p = p * mask
        p /= p.sum()
    return p


def chi_square_pvalue(counts, probs):
    from scipy import stats  # noqa: F401  (scipy ships with the test extras' deps)
    expected = probs * counts.sum()
    nz = expected > 0
    assert counts[~nz].sum() == 0, "sampled a token with probability 0"
    return stats.chisquare(counts[nz], expected[nz]).pvalue


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=1.0),
    SamplingParams(temperature=0.7, top_k=5),
    SamplingParams(temperature=1.3, top_p=0.8),
    SamplingParams(temperature=0.9, top_k=6, top_p=0.7),
])
def test_first_token_distribution_matches_exact_probabilities(tiny, params):
    graphdef, p = tiny
    prompt = np.array([[3, 7, 1, 9]], np.int32)
    logits = np.asarray(forward_logits(graphdef, p, prompt, np.ones_like(prompt, bool)))[0, -1]
    exact = reference_distribution(logits, params.temperature, params.top_k, params.top_p)
    n = 4000
    sampler = Sampler(graphdef, CFG, max_new_tokens=1, eos_ids=[0], pad_id=0)
    out = sampler(p, None, prompt, np.ones_like(prompt, bool), jax.random.key(42), params,
                  num_samples=n)
    counts = np.bincount(np.asarray(out.tokens[:, 0]), minlength=CFG.vocab_size)
    assert chi_square_pvalue(counts, exact) > 1e-3
    # the returned log-probs are those of the unmodified model distribution
    logp = jax.nn.log_softmax(jnp.asarray(logits))
    np.testing.assert_allclose(out.logprobs[:, 0], logp[out.tokens[:, 0]], atol=1e-5)


@pytest.mark.parametrize("candidates", [256, 3])  # 3: the nucleus never fits -> bisection
@pytest.mark.parametrize("params", [SamplingParams(temperature=0.8, top_k=10, top_p=0.9),
                                    SamplingParams(temperature=1.2, top_p=0.7),
                                    SamplingParams(temperature=0.5, top_k=5)])
def test_choose_tokens_matches_reference_on_many_rows(monkeypatch, candidates, params):
    import sjjax.sampling
    monkeypatch.setattr(sjjax.sampling, "CANDIDATES", candidates)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(CFG.vocab_size,)) * 2
    rows = jnp.tile(jnp.asarray(logits, jnp.float32), (20000, 1))
    tokens = np.asarray(choose_tokens(rows, jax.random.key(1), params))
    counts = np.bincount(tokens, minlength=CFG.vocab_size)
    expected = reference_distribution(logits, params.temperature, params.top_k, params.top_p)
    assert chi_square_pvalue(counts, expected) > 1e-3


def test_fixed_key_reproduces_and_no_recompilation(tiny):
    graphdef, p = tiny
    sampler = Sampler(graphdef, CFG, max_new_tokens=12, eos_ids=[0], pad_id=0)
    tokens = np.array([[0, 0, 5, 6], [1, 2, 3, 4]], np.int32)
    mask = tokens > 0
    mask[1] = True
    params = SamplingParams(top_p=0.9)
    a = sampler(p, None, tokens, mask, jax.random.key(7), params, num_samples=3)
    compiled = sampler.compiled_count()
    b = sampler(p, None, tokens, mask, jax.random.key(7), params, num_samples=3)
    c = sampler(p, None, tokens + 1, mask, jax.random.key(8), params, num_samples=3)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)
    assert a.tokens.shape == (6, 12)
    assert sampler.compiled_count() == compiled, "same bucketed shapes must not recompile"


def test_eos_stops_each_row_and_pads_after(tiny):
    graphdef, p = tiny
    tokens = np.array([[0, 4, 5, 6], [1, 2, 3, 4]], np.int32)
    mask = np.array([[False, True, True, True], [True] * 4])
    free = Sampler(graphdef, CFG, max_new_tokens=10, eos_ids=[23], pad_id=23)
    greedy = SamplingParams(greedy=True)
    base = np.asarray(free(p, None, tokens, mask, jax.random.key(0), greedy).tokens)
    eos = int(base[0, 2])  # make row 0's third token the EOS
    stopped = Sampler(graphdef, CFG, max_new_tokens=10, eos_ids=[eos], pad_id=CFG.vocab_size - 1)
    out = stopped(p, None, tokens, mask, jax.random.key(0), greedy)
    for row in range(2):
        hits = np.flatnonzero(base[row] == eos)
        n = int(hits[0]) + 1 if hits.size else 10
        assert int(out.lengths[row]) == n
        np.testing.assert_array_equal(out.tokens[row, :n], base[row, :n])
        assert (np.asarray(out.tokens[row, n:]) == CFG.vocab_size - 1).all()
        assert (np.asarray(out.logprobs[row, n:]) == 0).all()


def test_left_padding_does_not_change_samples(tiny):
    graphdef, p = tiny
    sampler = Sampler(graphdef, CFG, max_new_tokens=8, eos_ids=[0], pad_id=0)
    short = np.array([[5, 6, 7]], np.int32)
    padded = np.array([[0, 0, 0, 5, 6, 7]], np.int32)
    greedy = SamplingParams(greedy=True)
    a = sampler(p, None, short, short > 0, jax.random.key(0), greedy)
    b = sampler(p, None, padded, padded > 0, jax.random.key(0), greedy)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


@pytest.mark.parametrize("params", [
    SamplingParams(temperature=1.0),
    SamplingParams(temperature=0.7, top_k=5),
    SamplingParams(temperature=1.3, top_p=0.8),
    SamplingParams(temperature=0.9, top_k=6, top_p=0.7),
    SamplingParams(temperature=1.0, top_p=0.05),  # the most likely token only
])
@pytest.mark.parametrize("candidates", [256, 3])  # 3: the nucleus never fits -> bisection
def test_sampling_logits_give_the_exact_distribution(monkeypatch, candidates, params):
    """softmax(sampling_logits) is the reference distribution, row by row."""
    import sjjax.sampling
    monkeypatch.setattr(sjjax.sampling, "CANDIDATES", candidates)
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(50, CFG.vocab_size)) * 2
    got = np.asarray(jax.nn.softmax(sampling_logits(jnp.asarray(logits, jnp.float32), params)))
    for row, want in zip(got, logits):
        want = reference_distribution(want, params.temperature, params.top_k, params.top_p)
        np.testing.assert_allclose(row, want, atol=1e-6)
        assert ((row > 0) == (want > 0)).all()


def test_top_k_keeps_tokens_tied_with_the_kth_like_transformers():
    logits = jnp.array([[3.0, 1.0, 1.0, 0.0]])
    kept = np.isfinite(np.asarray(sampling_logits(logits, SamplingParams(top_k=2))))
    assert kept.tolist() == [[True, True, True, False]]


@pytest.mark.parametrize("block", [256, 5])  # 5: two-level search over blocks of 5 entries
def test_draw_agrees_with_a_float64_search(block):
    """The one-uniform draw picks the entry a float64 searchsorted on the same uniform
    picks (away from rounding ties), and never an entry of probability 0."""
    rng = np.random.default_rng(3)
    probs = rng.random((400, 23)) * (rng.random((400, 23)) < 0.6)  # many exact zeros
    probs[:, 7] += 1e-3                                           # every row has mass
    key = jax.random.key(5)
    with np.errstate(divide="ignore"):
        got = np.asarray(draw(jnp.asarray(np.log(probs), jnp.float32), key, block))
    u = np.asarray(jax.random.uniform(key, (400,), jnp.float32), np.float64)
    p32 = probs.astype(np.float32).astype(np.float64)
    cdf = np.cumsum(p32, 1)
    want = np.array([np.searchsorted(c, ui * c[-1], side="right") for c, ui in zip(cdf, u)])
    # where the target lies within float32 rounding of a CDF step either answer is right
    gap = np.min(np.abs(cdf - (u * cdf[:, -1])[:, None]), 1)
    clear = gap > 1e-5
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(got[clear], want[clear])
    assert (p32[np.arange(400), got] > 0).all()


def test_draw_two_level_matches_exact_distribution():
    rng = np.random.default_rng(1)
    p = rng.random(CFG.vocab_size) * (rng.random(CFG.vocab_size) < 0.7)
    with np.errstate(divide="ignore"):
        rows = jnp.tile(jnp.asarray(np.log(p), jnp.float32), (20000, 1))
    tokens = np.asarray(draw(rows, jax.random.key(2), block=4))
    counts = np.bincount(tokens, minlength=CFG.vocab_size)
    assert chi_square_pvalue(counts, p / p.sum()) > 1e-3


def test_greedy_picks_the_first_maximum_like_argmax():
    rng = np.random.default_rng(0)
    logits = rng.integers(0, 4, size=(64, 50)).astype(np.float32)  # many ties
    got = np.asarray(choose_tokens(jnp.asarray(logits), jax.random.key(0),
                                   SamplingParams(greedy=True)))
    np.testing.assert_array_equal(got, np.argmax(logits, -1))


def test_decode_chunks_cover_every_step():
    from sjjax.sampling import decode_chunk_ends
    assert decode_chunk_ends(128, 4) == [32, 64, 96, 128]
    assert decode_chunk_ends(10, 4) == [3, 6, 9, 10]
    assert decode_chunk_ends(1, 4) == [1]
    assert decode_chunk_ends(5, 1) == [5]


def test_chunked_decoding_windows_change_nothing(tiny):
    """Each decoding chunk attends to the cache slots written so far only; the samples and
    log-probs must equal those of one loop over the whole cache."""
    graphdef, p = tiny
    tokens = np.array([[0, 0, 5, 6, 2], [1, 2, 3, 4, 7]], np.int32)
    mask = tokens > 0
    mask[1] = True
    outs = {}
    for chunks in (1, 4):
        sampler = Sampler(graphdef, CFG, max_new_tokens=11, eos_ids=[23], pad_id=0,
                          decode_chunks=chunks)
        outs[chunks] = [sampler(p, None, tokens, mask, jax.random.key(3), sp, num_samples=2)
                        for sp in (SamplingParams(greedy=True), SamplingParams(top_p=0.9))]
    for one, chunked in zip(outs[1], outs[4]):
        np.testing.assert_array_equal(one.tokens, chunked.tokens)
        np.testing.assert_allclose(one.logprobs, chunked.logprobs, atol=1e-5)


def test_cache_window_out_of_range_is_an_error(tiny):
    from sjjax.model import KVCache
    from sjjax.model.transformer import merge_params
    graphdef, p = tiny
    cache = KVCache.empty(CFG, 1, 8)
    model = merge_params(graphdef, p)
    with pytest.raises(ValueError, match="cache_window=9"):
        model(jnp.ones((1, 1), jnp.int32), None, cache, cache_window=9)


def test_greedy_sampling_equals_argmax_of_the_full_forward():
    """Decoding over the KV cache (LoRA adapters on, tied embeddings, a left-padded row)
    picks, step by step, the argmax of a full forward over the sequence so far."""
    import dataclasses
    from flax import nnx
    cfg = dataclasses.replace(CFG, tie_word_embeddings=True)
    model = init_model(cfg, seed=1)
    model.add_lora(4, 8.0, ["q_proj", "v_proj", "down_proj"], nnx.Rngs(params=2))
    for module in (model.layers.attn.q_proj, model.layers.attn.v_proj, model.layers.mlp.down_proj):
        module.lora_b[...] = 0.1 * jnp.ones_like(module.lora_b[...])  # B = 0 at init
    graphdef, params, lora = split_params(model)
    tokens = np.array([[0, 0, 5, 6, 2], [1, 2, 3, 4, 7]], np.int32)
    mask = np.array([[False, False, True, True, True], [True] * 5])
    sampler = Sampler(graphdef, cfg, max_new_tokens=6, eos_ids=[100], pad_id=0)
    out = sampler(params, lora, tokens, mask, jax.random.key(0), SamplingParams(greedy=True))
    seq, seq_mask = tokens, mask
    for step in range(6):
        logits = np.asarray(forward_logits(graphdef, params, seq, seq_mask, lora))[:, -1]
        np.testing.assert_array_equal(out.tokens[:, step], logits.argmax(-1))
        seq = np.concatenate([seq, np.asarray(out.tokens[:, step:step + 1])], 1)
        seq_mask = np.concatenate([seq_mask, np.ones((2, 1), bool)], 1)
