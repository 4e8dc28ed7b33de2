"""Named architectures: sizes as published, buildable, round-trip through HF config.json."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from sjjax.model import ModelConfig, abstract_model, split_params
from sjjax.model.presets import (ARCHITECTURES, architecture_names, get_architecture,
                                 is_architecture)

# Parameter counts of the Hugging Face checkpoints.
PUBLISHED = {"smollm2_135m": 134_515_008, "llama2_7b": 6_738_415_616,
             "llama3_8b": 8_030_261_248, "mistral_7b": 7_241_732_096,
             "llama_1b": 1_235_814_400}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_architecture_sizes_and_abstract_model(name):
    cfg = get_architecture(name)
    assert cfg.num_params() == PUBLISHED[name]
    _, params, _ = split_params(abstract_model(cfg))  # shapes only, nothing allocated
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params)) == PUBLISHED[name]
    assert ModelConfig.from_hf_dict(cfg.to_hf_dict()) == cfg


def test_architecture_details_and_overrides():
    smol = get_architecture("smollm2")
    assert smol == get_architecture("smollm2_135m")
    assert (smol.num_layers, smol.hidden_size, smol.num_heads, smol.num_kv_heads,
            smol.head_dim, smol.intermediate_size, smol.vocab_size) == (30, 576, 9, 3, 64, 1536,
                                                                        49152)
    assert smol.tie_word_embeddings and smol.rope_theta == 1e5 and smol.rms_norm_eps == 1e-5
    assert not get_architecture("llama2_7b").tie_word_embeddings
    mistral = get_architecture("mistral_7b")
    assert mistral.model_type == "mistral" and mistral.sliding_window == 4096
    one_b = get_architecture("llama_1b")
    assert one_b.tie_word_embeddings and one_b.rope_scaling_dict == {
        "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}
    cfg = get_architecture("llama2_7b", dtype="bfloat16", remat="full", num_layers=2)
    assert (cfg.dtype, cfg.remat, cfg.num_layers, cfg.hidden_size) == ("bfloat16", "full", 2, 4096)
    assert is_architecture("llama3_8b") and not is_architecture("gpt2")
    assert architecture_names() == sorted(ARCHITECTURES)
    with pytest.raises(KeyError, match="unknown model architecture"):
        get_architecture("gpt2")
