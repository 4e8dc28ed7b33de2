"""Each attention implementation that runs on CPU equals the hand-written einsum attention
(float32, 1e-5), forward and gradient: left padding, GQA, a sliding window, a KV cache."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sjjax.model import attention
from sjjax.model.kv_cache import KVCache
from sjjax.model.transformer import Transformer

B, T, H, K, DH = 2, 8, 4, 2, 16  # GQA: 2 query heads per key/value head
TOL = 1e-5


def _geometry(token_mask, sliding_window=None, cache=None):
    fake = types.SimpleNamespace(config=types.SimpleNamespace(sliding_window=sliding_window))
    return Transformer._geometry(fake, jnp.asarray(token_mask), cache)[0]


def _qkv(seed, t=T):
    keys = jax.random.split(jax.random.key(seed), 3)
    return (jax.random.normal(keys[0], (B, t, H, DH)),
            jax.random.normal(keys[1], (B, t, K, DH)),
            jax.random.normal(keys[2], (B, t, K, DH)))


def _left_padded(t=T, pads=(3, 0)):
    return np.arange(t)[None, :] >= np.asarray(pads)[:, None]  # [B, T]


def _value_and_grads(fn, q, k, v, row_weights):
    """fn's output and the gradient of a random projection of it w.r.t. q, k, v."""
    cot = jax.random.normal(jax.random.key(9), q.shape) * row_weights[:, :, None, None]

    def scalar(q, k, v):
        return jnp.sum(fn(q, k, v) * cot)

    # Jitted: op-by-op dispatch of the backward costs more than compiling it.
    return jax.jit(fn)(q, k, v), jax.jit(jax.grad(scalar, argnums=(0, 1, 2)))(q, k, v)


def _assert_close(a, b, rows=None):
    (out_a, grads_a), (out_b, grads_b) = a, b
    if rows is not None:  # padding rows' outputs differ by design (never read)
        out_a, out_b = out_a * rows[:, :, None, None], out_b * rows[:, :, None, None]
    np.testing.assert_allclose(out_a, out_b, atol=TOL, rtol=TOL)
    for ga, gb in zip(grads_a, grads_b):
        np.testing.assert_allclose(ga, gb, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("window", [None, 3])
def test_xla_full_attention_equals_einsum(window):
    tm = _left_padded()
    geo = _geometry(tm, window)
    q, k, v = _qkv(0)
    ones = jnp.ones((B, T))

    def ref(q, k, v):
        return attention.einsum_attention(q, k, v, geo.mask)

    def lib(q, k, v):
        return attention.full_attention(q, k, v, geo.mask[:, :, 0], "xla",
                                        token_mask=geo.token_mask, sliding_window=window)

    ref_out = _value_and_grads(ref, q, k, v, ones)
    _assert_close(_value_and_grads(lib, q, k, v, ones), ref_out)
    assert np.isfinite(np.asarray(ref_out[0])).all()  # padding rows are not NaN


def test_xla_attention_with_kv_cache_equals_einsum():
    """New tokens over [cached prefix with a gap ; left-padded new tokens], one softmax:
    the concatenating library path (what cuDNN runs) equals the in-place einsum."""
    s, t, window = 6, 4, 5
    cache = KVCache.empty(types.SimpleNamespace(num_layers=1, num_kv_heads=K, head_dim=DH,
                                                compute_dtype=jnp.float32), B, s + t)
    positions = np.full((B, s + t), -1, np.int32)
    positions[0, :s] = [0, 1, 2, -1, 3, 4]       # a gap in the cached prefix
    positions[1, 2:s] = [0, 1, 2, 3]             # left-padded prefix
    cache = cache._replace(positions=jnp.asarray(positions), index=jnp.asarray(s, jnp.int32))
    geo = _geometry(_left_padded(t, (1, 0)), window, cache)
    ck = jax.random.normal(jax.random.key(5), (B, K, s, DH))
    cv = jax.random.normal(jax.random.key(6), (B, K, s, DH))
    cache_mask = geo.cache_mask[..., :s]
    q, k, v = _qkv(1, t)
    ones = jnp.ones((B, t))

    def ref(q, k, v):
        return attention.einsum_attention(q, k, v, geo.mask, ck, cv, cache_mask)

    def lib(q, k, v):
        return attention.concatenated_attention(q, k, v, geo.mask, ck, cv, cache_mask, "xla")

    _assert_close(_value_and_grads(lib, q, k, v, ones), _value_and_grads(ref, q, k, v, ones))
    # On CPU every implementation's cache path is the einsum itself.
    out = attention.cached_attention(q, k, v, geo.mask, ck, cv, cache_mask, "xla")
    np.testing.assert_array_equal(out, ref(q, k, v))


def test_auto_resolution():
    kw = dict(head_dim=64, q_len=256, kv_len=256)
    assert attention.resolve("auto", dtype=jnp.bfloat16, backend="cpu", **kw) == "xla"
    assert attention.resolve("auto", dtype=jnp.bfloat16, backend="gpu", **kw) == "cudnn"
    assert attention.resolve("auto", dtype=jnp.float32, backend="gpu", **kw) == "xla"
    # One-token decode steps keep the einsum (cuDNN needs q_len > 1).
    assert attention.resolve("auto", dtype=jnp.bfloat16, backend="gpu", head_dim=64,
                             q_len=1, kv_len=257) == "xla"
    assert attention.resolve("splash", dtype=jnp.float32, backend="cpu", **kw) == "splash"
    with pytest.raises(ValueError, match="model.attention"):
        attention.resolve("flash", dtype=jnp.float32, **kw)


def test_splash_interpret_equals_einsum():
    """The Pallas splash kernel in interpret mode (real rows only: splash lets a padding
    query attend to the padding before it, the einsum to nothing)."""
    pytest.importorskip("jax.experimental.pallas.ops.tpu.splash_attention")
    t, window = 128, 40
    tm = _left_padded(t, (50, 0))
    geo = _geometry(tm, window)
    q, k, v = _qkv(2, t)
    rows = jnp.asarray(tm, jnp.float32)

    def ref(q, k, v):
        return attention.einsum_attention(q, k, v, geo.mask)

    def splash(q, k, v):
        return attention.full_attention(q, k, v, geo.mask[:, :, 0], "splash",
                                        token_mask=geo.token_mask, sliding_window=window,
                                        interpret=True)

    try:
        got = _value_and_grads(splash, q, k, v, rows)
    except Exception as e:  # noqa: BLE001  (a Pallas build without CPU interpret support)
        pytest.skip(f"splash attention does not run in interpret mode here: {e!r:.200}")
    _assert_close(got, _value_and_grads(ref, q, k, v, rows), rows)
