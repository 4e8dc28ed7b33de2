"""The CPU decode kernel (sjjax/kernels/cpu_matvec.cc): products against numpy in float64,
the model's packed forward against its XLA forward, and the sampler on both paths."""

import dataclasses
import functools
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sjjax.kernels import cpu_matvec
from sjjax.model import ModelConfig, init_model, split_params
from sjjax.model.kv_cache import KVCache
from sjjax.model.transformer import merge_params
from sjjax.sampling import DECODE_KERNEL_MAX_ROWS, Sampler, SamplingParams

if shutil.which(os.environ.get("CXX", "c++")) is None:
    pytest.skip("no C++ compiler: the CPU decode kernel cannot be built here",
                allow_module_level=True)
if os.environ.get("SJJAX_CPU_KERNELS") == "0":
    pytest.skip("SJJAX_CPU_KERNELS=0 turns the kernel off", allow_module_level=True)


def test_kernel_builds_and_registers():
    assert cpu_matvec.available()
    assert cpu_matvec.panel_width() in (4, 8, 48)


@pytest.mark.parametrize("m,k,n", [
    (1, 5, 7), (2, 64, 100), (3, 576, 192), (8, 576, 576), (9, 33, 97), (17, 64, 200),
    (5, 1536, 49),
])
def test_product_matches_numpy(m, k, n):
    """Every row-block size (8, 4, 2, 1 and their tails), widths that are not a multiple
    of the panel, each layer of a stack: against a float64 product."""
    rng = np.random.default_rng(m * 1000 + n)
    w = rng.standard_normal((3, k, n)).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    product = jax.jit(lambda x, w, i: cpu_matvec.matmul(x, cpu_matvec.pack(w, k, n), n, i))
    for layer in range(3):
        got = np.asarray(product(x, w, layer))
        want = x.astype(np.float64) @ w[layer]
        assert got.shape == (m, n)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_transposed_packing_and_batch_axes():
    """A tied embedding [V, d] packs without a transpose in XLA; x keeps leading axes."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((1000, 64)).astype(np.float32)
    x = rng.standard_normal((2, 3, 64)).astype(np.float32)
    got = jax.jit(lambda x, e: cpu_matvec.matmul(
        x, cpu_matvec.pack(e, 64, 1000, transposed=True), 1000))(x, emb)
    np.testing.assert_allclose(got, x @ emb.T, atol=1e-4)


def test_bad_layer_index_is_an_error():
    w = cpu_matvec.pack(jnp.ones((2, 4, 4)), 4, 4)
    with pytest.raises(Exception, match="layer index out of range"):
        jax.block_until_ready(cpu_matvec.matmul(jnp.ones((1, 4)), w, 4, 2))


CONFIGS = {
    "llama": ModelConfig(vocab_size=101, hidden_size=48, intermediate_size=80, num_layers=3,
                         num_heads=4, num_kv_heads=2, head_dim=12, initializer_range=0.3),
    "tied": ModelConfig(vocab_size=101, hidden_size=48, intermediate_size=80, num_layers=2,
                        num_heads=4, num_kv_heads=2, head_dim=12, initializer_range=0.3,
                        tie_word_embeddings=True),
    "qwen2_bias": ModelConfig(vocab_size=101, hidden_size=48, intermediate_size=80,
                              num_layers=2, num_heads=4, num_kv_heads=2, head_dim=12,
                              initializer_range=0.3, attention_bias=True),
}


@pytest.mark.parametrize("name", sorted(CONFIGS) + ["lora"])
def test_packed_decode_step_matches_xla(name):
    """A prompt, then two one-token steps with a cache: logits and cache equal on both
    paths (biases, tied embeddings and LoRA adapters included)."""
    cfg = CONFIGS.get(name, CONFIGS["llama"])
    model = init_model(cfg, seed=1)
    if name == "lora":
        from flax import nnx
        model.add_lora(4, 8.0, ["q_proj", "v_proj", "down_proj"], nnx.Rngs(params=2))
        for module in (model.layers.attn.q_proj, model.layers.attn.v_proj,
                       model.layers.mlp.down_proj):  # B = 0 at init: make the adapters count
            module.lora_b[...] = 0.1 * jnp.ones_like(module.lora_b[...])
    graphdef, params, lora = split_params(model)
    prompt = jnp.array([[0, 5, 9, 3], [4, 8, 1, 2]], jnp.int32)
    mask = jnp.array([[False, True, True, True], [True] * 4])

    @functools.partial(jax.jit, static_argnums=2)
    def run(params, lora, use_kernel):
        m = merge_params(graphdef, params, lora)
        packed = m.pack_for_decoding() if use_kernel else None
        cache = KVCache.empty(cfg, 2, 8, jnp.float32)
        _, cache = m(prompt, mask, cache)
        outs = []
        for token in (jnp.array([[7], [11]]), jnp.array([[2], [6]])):
            logits, cache = m(token, None, cache, packed=packed)
            outs.append(logits)
        return jnp.stack(outs), cache.k

    xla, kernel = run(params, lora, False), run(params, lora, True)
    np.testing.assert_allclose(kernel[0], xla[0], atol=2e-5)
    np.testing.assert_allclose(kernel[1], xla[1], atol=2e-5)


def test_packing_a_bfloat16_model_is_refused():
    cfg = ModelConfig(vocab_size=11, hidden_size=16, intermediate_size=24, num_layers=1,
                      num_heads=2, num_kv_heads=1, head_dim=8, dtype="bfloat16")
    with pytest.raises(ValueError, match="computes in float32"):
        init_model(cfg).pack_for_decoding()


def test_sampler_gives_the_same_samples_on_both_paths():
    cfg = CONFIGS["llama"]
    graphdef, params, _ = split_params(init_model(cfg, seed=3))
    tokens = np.array([[0, 0, 5, 6, 2], [1, 2, 3, 4, 7]], np.int32)
    mask = tokens > 0
    mask[1] = True
    outs = {}
    for use in (False, True):
        sampler = Sampler(graphdef, cfg, max_new_tokens=9, eos_ids=[100], pad_id=0,
                          decode_kernel=use)
        outs[use] = [sampler(params, None, tokens, mask, jax.random.key(5), sp, num_samples=2)
                     for sp in (SamplingParams(greedy=True), SamplingParams(top_p=0.9))]
    for xla, kernel in zip(outs[False], outs[True]):
        np.testing.assert_array_equal(kernel.tokens, xla.tokens)
        np.testing.assert_allclose(kernel.logprobs, xla.logprobs, atol=1e-5)


def test_sampler_chooses_the_kernel_only_where_it_applies():
    cfg = CONFIGS["llama"]
    graphdef, params, _ = split_params(init_model(cfg))
    auto = Sampler(graphdef, cfg, max_new_tokens=2, eos_ids=[0], pad_id=0)
    assert auto._decode_kernel_for(params, rows=8)
    assert not auto._decode_kernel_for(params, rows=DECODE_KERNEL_MAX_ROWS + 1)
    forced = Sampler(graphdef, cfg, max_new_tokens=2, eos_ids=[0], pad_id=0,
                     decode_kernel=True)
    with pytest.raises(ValueError, match="rows > DECODE_KERNEL_MAX_ROWS"):
        forced._decode_kernel_for(params, rows=DECODE_KERNEL_MAX_ROWS + 1)
    bf16 = dataclasses.replace(cfg, dtype="bfloat16")
    with pytest.raises(ValueError, match="does not compute in float32"):
        Sampler(graphdef, bf16, max_new_tokens=2, eos_ids=[0], pad_id=0,
                decode_kernel=True)._decode_kernel_for(params, rows=1)
    off = Sampler(graphdef, cfg, max_new_tokens=2, eos_ids=[0], pad_id=0, decode_kernel=False)
    assert not off._decode_kernel_for(params, rows=1)


def test_packed_weights_follow_the_parameters():
    """The packing is reused for the same parameter arrays and redone for new ones: a
    sampler that sampled with old weights samples with the new ones after an update."""
    cfg = CONFIGS["llama"]
    graphdef, old, _ = split_params(init_model(cfg, seed=3))
    _, new, _ = split_params(init_model(cfg, seed=4))
    tokens, mask = np.array([[1, 2, 3]], np.int32), np.ones((1, 3), bool)
    greedy = SamplingParams(greedy=True)

    def fresh(params):
        sampler = Sampler(graphdef, cfg, max_new_tokens=8, eos_ids=[100], pad_id=0,
                          decode_kernel=False)
        return sampler(params, None, tokens, mask, jax.random.key(0), greedy).tokens

    sampler = Sampler(graphdef, cfg, max_new_tokens=8, eos_ids=[100], pad_id=0,
                      decode_kernel=True)
    first = sampler(old, None, tokens, mask, jax.random.key(0), greedy).tokens
    packed = sampler._packed[1]
    sampler(old, None, tokens, mask, jax.random.key(0), greedy)
    assert sampler._packed[1] is packed  # same arrays: no repacking
    updated = sampler(new, None, tokens, mask, jax.random.key(0), greedy).tokens
    assert sampler._packed[1] is not packed
    np.testing.assert_array_equal(first, fresh(old))
    np.testing.assert_array_equal(updated, fresh(new))
    assert not np.array_equal(fresh(old), fresh(new))  # the check above can tell them apart


FALLBACK_SCRIPT = """
import jax, numpy as np
from sjjax.kernels import cpu_matvec
from sjjax.model import ModelConfig, init_model, split_params
from sjjax.sampling import Sampler, SamplingParams
cfg = ModelConfig(vocab_size=11, hidden_size=16, intermediate_size=24, num_layers=1,
                  num_heads=2, num_kv_heads=1, head_dim=8)
graphdef, params, _ = split_params(init_model(cfg))
sampler = Sampler(graphdef, cfg, max_new_tokens=3, eos_ids=[10], pad_id=0)
out = sampler(params, None, np.array([[1, 2]]), np.ones((1, 2), bool), jax.random.key(0),
              SamplingParams(greedy=True))
print("available", cpu_matvec.available(), "kernel", sampler._decode_kernel_for(params, 1),
      "tokens", out.tokens.shape)
"""


@pytest.mark.parametrize("env", [{"SJJAX_CPU_KERNELS": "0"}, {"CXX": "/nonexistent/c++"}])
def test_without_the_kernel_sampling_falls_back_to_xla(env, tmp_path):
    """Switched off, or no compiler to build it: the sampler decodes with XLA's matmuls."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    full_env = {**os.environ, "SJJAX_CACHE": str(tmp_path), "PYTHONPATH": root, **env}
    done = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], env=full_env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "available False kernel False tokens (1, 3)" in done.stdout
    if "CXX" in env:
        assert "no C++ compiler" in done.stderr  # the warning says why

