"""sjjax logits vs transformers' PyTorch logits on random-weight checkpoints."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sjjax.model import KVCache, ModelConfig, UnsupportedArchitectureError, split_params
from sjjax.model.hf_io import CheckpointMismatchError, load_hf_dir, save_hf_dir
from sjjax.model.loading import build_model, load_pretrained
from tests.hf_reference import (left_padded_batch, save_random_hf_model, tiny_hf_configs,
                                torch_logits)

torch = pytest.importorskip("torch")
LENGTHS = [11, 5, 8, 1]  # a left-padded batch of mixed lengths


@pytest.fixture(scope="module", params=sorted(tiny_hf_configs()))
def family(request, tmp_path_factory):
    name = request.param
    path = tmp_path_factory.mktemp(name)
    hf_model = save_random_hf_model(tiny_hf_configs()[name], path, seed=1)
    return name, path, hf_model


def test_logits_match_transformers(family):
    name, path, hf_model = family
    cfg, params, _ = load_pretrained(path, with_tokenizer=False)
    tokens, mask = left_padded_batch(cfg.vocab_size, LENGTHS)
    ours, _ = build_model(cfg, params)(jnp.asarray(tokens), jnp.asarray(mask))
    ref = torch_logits(hf_model, tokens, mask)
    err = np.abs(np.asarray(ours) - ref)[mask].max()
    assert err < 1e-4, f"{name}: max abs logit error {err}"
    assert np.abs(ref[mask]).max() > 0.5, "reference logits too small to be a meaningful check"


def test_family_specific_config(family):
    name, path, _ = family
    cfg = ModelConfig.from_hf_json(os.path.join(path, "config.json"))
    expected = {"llama": dict(tie_word_embeddings=False, attention_bias=False),
                "llama_tied": dict(tie_word_embeddings=True),
                "llama_bias": dict(attention_bias=True, output_bias=True, model_type="llama"),
                "llama3_rope": dict(rope_theta=500000.0),
                "mistral": dict(sliding_window=4, model_type="mistral"),
                "qwen2": dict(attention_bias=True, output_bias=False, model_type="qwen2")}[name]
    for key, value in expected.items():
        assert getattr(cfg, key) == value, (name, key)
    if name == "llama3_rope":
        assert cfg.rope_scaling_dict["rope_type"] == "llama3"


def test_kv_cache_decode_equals_full_forward(family):
    """Prefill a prefix, then decode one token at a time: each step's logits must equal
    the full-sequence forward at that position (left-padded rows included)."""
    _, path, _ = family
    cfg, params, _ = load_pretrained(path, with_tokenizer=False)
    model = build_model(cfg, params)
    tokens, mask = left_padded_batch(cfg.vocab_size, LENGTHS, seed=3)
    full, _ = model(jnp.asarray(tokens), jnp.asarray(mask))
    prefix = 6
    cache = KVCache.empty(cfg, len(LENGTHS), tokens.shape[1] + 2)
    logits, cache = model(jnp.asarray(tokens[:, :prefix]), jnp.asarray(mask[:, :prefix]), cache)
    valid = mask[:, :prefix]  # padding slots attend to nothing; their logits are arbitrary
    np.testing.assert_allclose(np.asarray(logits)[valid], np.asarray(full)[:, :prefix][valid],
                               atol=1e-5)
    step = jax.jit(lambda t, m, c: model(t, m, c, logits="last"))
    for i in range(prefix, tokens.shape[1]):
        last, cache = step(jnp.asarray(tokens[:, i:i + 1]), jnp.asarray(mask[:, i:i + 1]), cache)
        valid = mask[:, i]
        np.testing.assert_allclose(np.asarray(last)[valid], np.asarray(full)[:, i][valid],
                                   atol=1e-5, err_msg=f"position {i}")


def test_export_round_trip(family, tmp_path):
    """sjjax -> HF directory -> transformers gives sjjax's logits."""
    from transformers import AutoModelForCausalLM
    name, path, _ = family
    cfg, params, _ = load_pretrained(path, with_tokenizer=False)
    # Perturb the weights so the exported model differs from the imported files.
    params = jax.tree.map(lambda p: p + 0.01 * np.sign(p), params)
    save_hf_dir(tmp_path, cfg, params)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    tokens, mask = left_padded_batch(cfg.vocab_size, LENGTHS, seed=5)
    ours, _ = build_model(cfg, params)(jnp.asarray(tokens), jnp.asarray(mask))
    err = np.abs(np.asarray(ours) - torch_logits(reloaded, tokens, mask))[mask].max()
    assert err < 1e-4, f"{name}: round trip error {err}"
    cfg2, params2 = load_hf_dir(tmp_path)
    assert cfg2 == cfg.replace(max_position_embeddings=cfg2.max_position_embeddings)
    jax.tree.map(np.testing.assert_array_equal, params2, params)


def test_sharded_index_round_trip(tmp_path):
    from transformers import LlamaConfig
    src = tmp_path / "src"
    save_random_hf_model(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48,
                                     num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2), src)
    cfg, params = load_hf_dir(src)
    save_hf_dir(tmp_path / "sharded", cfg, params, max_shard_bytes=8000)
    files = sorted(os.listdir(tmp_path / "sharded"))
    assert "model.safetensors.index.json" in files
    assert sum(f.endswith(".safetensors") for f in files) > 2
    _, params2 = load_hf_dir(tmp_path / "sharded")
    jax.tree.map(np.testing.assert_array_equal, params2, params)


def test_mismatched_checkpoint_names_tensor_and_shapes(family, tmp_path):
    _, path, _ = family
    hf = json.loads((path / "config.json").read_text())
    for file in os.listdir(path):
        os.symlink(path / file, tmp_path / file)
    os.remove(tmp_path / "config.json")
    (tmp_path / "config.json").write_text(json.dumps({**hf, "intermediate_size": 80}))
    with pytest.raises(CheckpointMismatchError,
                       match=r"model.layers.0.mlp.gate_proj.weight.*\(96, 64\).*\(80, 64\)"):
        load_hf_dir(tmp_path)


def test_extra_layers_are_reported(family, tmp_path):
    _, path, _ = family
    hf = json.loads((path / "config.json").read_text())
    for file in os.listdir(path):
        if file != "config.json":
            os.symlink(path / file, tmp_path / file)
    (tmp_path / "config.json").write_text(json.dumps({**hf, "num_hidden_layers": 1}))
    with pytest.raises(CheckpointMismatchError, match="model.layers.1"):
        load_hf_dir(tmp_path)


def test_unsupported_architecture_names_itself(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 10}))
    with pytest.raises(UnsupportedArchitectureError, match="gpt2"):
        load_hf_dir(tmp_path)


def test_split_params_exposes_every_weight(family):
    _, path, hf_model = family
    cfg, params, _ = load_pretrained(path, with_tokenizer=False)
    _, split, lora = split_params(build_model(cfg, params))
    assert lora == {}
    n_ours = sum(np.size(x) for x in jax.tree.leaves(split))
    n_hf = sum(p.numel() for p in hf_model.parameters())
    assert n_ours == n_hf == cfg.num_params()
