"""Helpers that build reference models with transformers (PyTorch) for parity tests."""

from __future__ import annotations

import numpy as np


def tiny_hf_configs():
    """Small random-weight configs of every supported family: name -> transformers config."""
    from transformers import LlamaConfig, MistralConfig, Qwen2Config
    common = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  initializer_range=0.2, rms_norm_eps=1e-5)
    return {
        "llama": LlamaConfig(**common, rope_theta=10000.0, tie_word_embeddings=False),
        "llama_tied": LlamaConfig(**common, tie_word_embeddings=True),
        # transformers' Llama puts a bias on q, k, v and o_proj under attention_bias=True.
        "llama_bias": LlamaConfig(**common, attention_bias=True, tie_word_embeddings=False),
        "llama3_rope": LlamaConfig(**common, rope_theta=500000.0, rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
        "mistral": MistralConfig(**common, sliding_window=4, tie_word_embeddings=False),
        "qwen2": Qwen2Config(**common, tie_word_embeddings=False),
    }


def save_random_hf_model(config, path, seed=0):
    import torch
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():  # make every bias non-zero so that a dropped bias shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(path)
    return model.eval()


def left_padded_batch(vocab_size, lengths, seed=0, pad_id=0):
    """tokens [B, T] (left-padded with pad_id) and mask [B, T] for rows of given lengths."""
    rng = np.random.default_rng(seed)
    t = max(lengths)
    tokens = np.full((len(lengths), t), pad_id, np.int32)
    mask = np.zeros((len(lengths), t), bool)
    for i, n in enumerate(lengths):
        tokens[i, t - n:] = rng.integers(1, vocab_size, n)
        mask[i, t - n:] = True
    return tokens, mask


def torch_logits(model, tokens, mask):
    """transformers logits [B, T, V] for a left-padded batch, positions from the mask."""
    import torch
    ids = torch.tensor(np.asarray(tokens), dtype=torch.long)
    am = torch.tensor(np.asarray(mask), dtype=torch.long)
    pos = (am.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=am, position_ids=pos).logits.float().numpy()
