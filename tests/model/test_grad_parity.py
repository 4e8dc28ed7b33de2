"""Gradients of the masked training loss: sjjax (JAX autodiff of its forward) vs PyTorch
autograd through transformers' model, on random-weight checkpoints of every family.

The batch is left-padded with a loss mask on the last few tokens of each row, the shape
of a judgment example (one decision token after a long prompt) next to an SFT row with
a longer target, so a gradient that ignores padding, positions or the mask shows."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sjjax.losses import cross_entropy_terms
from sjjax.model.hf_io import params_to_hf_tensors
from sjjax.model.loading import build_model, load_pretrained
from sjjax.model.transformer import merge_params, split_params
from tests.hf_reference import left_padded_batch, save_random_hf_model, tiny_hf_configs

torch = pytest.importorskip("torch")
LENGTHS = [12, 7, 9]
TARGETS = [2, 5, 1]  # loss-masked tokens at the end of each row


def loss_mask(mask: np.ndarray) -> np.ndarray:
    out = np.zeros_like(mask)
    for row, n in enumerate(TARGETS):
        out[row, -n:] = True
    return out & mask


def torch_grads(model, tokens, mask, target_mask, normalize: str) -> dict:
    """HF name -> gradient of the same loss through transformers (positions from the mask)."""
    ids = torch.tensor(tokens, dtype=torch.long)
    am = torch.tensor(mask, dtype=torch.long)
    pos = (am.cumsum(-1) - 1).clamp(min=0)
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids, attention_mask=am, position_ids=pos).logits.float()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    m = torch.tensor(target_mask[:, 1:], dtype=torch.float32)
    nll = -(logp * m)
    if normalize == "token":
        loss = nll.sum() / m.sum()
    else:
        loss = (nll.sum(1) / m.sum(1)).mean()
    loss.backward()
    return {name: p.grad.numpy() for name, p in model.named_parameters()}


@pytest.mark.parametrize("normalize", ["token", "example"])
@pytest.mark.parametrize("family", ["llama", "llama_tied", "llama_bias", "mistral", "qwen2"])
def test_loss_gradients_match_pytorch(family, normalize, tmp_path):
    hf_model = save_random_hf_model(tiny_hf_configs()[family], tmp_path, seed=3)
    cfg, params, _ = load_pretrained(tmp_path, with_tokenizer=False)
    tokens, mask = left_padded_batch(cfg.vocab_size, LENGTHS, seed=5)
    target_mask = loss_mask(mask)
    graphdef, params, _ = split_params(build_model(cfg, params))

    def loss_fn(p):
        logits, _ = merge_params(graphdef, p)(jnp.asarray(tokens), jnp.asarray(mask))
        num, den = cross_entropy_terms(logits, jnp.asarray(tokens), jnp.asarray(target_mask),
                                       normalize)
        return num / den

    ours = dict(params_to_hf_tensors(jax.grad(loss_fn)(params), cfg))
    ref = torch_grads(hf_model.train(), tokens, mask, target_mask, normalize)
    if cfg.tie_word_embeddings:
        ref.pop("lm_head.weight", None)  # the same tensor as the embedding in torch
    assert set(ours) == set(ref), set(ours) ^ set(ref)
    for name, g in ref.items():
        scale = np.abs(g).max()
        assert scale > 0 or "embed" in name, f"{family}: zero reference gradient for {name}"
        err = np.abs(ours[name] - g).max()
        assert err <= 1e-4 * max(scale, 1e-3), f"{family}/{normalize}: {name} max error {err} " \
                                                f"(reference scale {scale})"
