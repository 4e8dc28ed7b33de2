"""SmolLM2-135M-Instruct, real weights from the GGUF file: sjjax vs transformers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sjjax.model.loading import build_model
from sjjax.model.transformer import split_params
from sjjax.sampling import Sampler, SamplingParams
from tests.hf_reference import torch_logits

torch = pytest.importorskip("torch")

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one short sentence."},
     {"role": "user", "content": "Why is the sky blue?"}],
    [{"role": "user", "content": "Write a haiku about a cat."},
     {"role": "assistant", "content": "Soft paws on the mat."},
     {"role": "user", "content": "Now one about a dog, please."}],
]


@pytest.fixture(scope="module")
def chat_batch(smollm2):
    _, _, tokenizer = smollm2
    enc = tokenizer.apply_chat_template(CHATS, add_generation_prompt=True, padding=True,
                                        return_dict=True, return_tensors="np")
    assert enc["attention_mask"][:, 0].sum() < len(CHATS), "batch should be left-padded"
    return enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(bool)


def test_logits_match_transformers(smollm2, smollm2_torch, chat_batch):
    cfg, params, _ = smollm2
    tokens, mask = chat_batch
    ours = np.asarray(build_model(cfg, params)(jnp.asarray(tokens), jnp.asarray(mask))[0])
    ref = torch_logits(smollm2_torch, tokens, mask)
    err = np.abs(ours - ref)[mask].max()
    assert err < 1e-3, f"max abs logit error {err}"


def test_greedy_decoding_matches_transformers_generate(smollm2, smollm2_torch, chat_batch):
    cfg, params, tokenizer = smollm2
    tokens, mask = chat_batch
    graphdef, p, _ = split_params(build_model(cfg, params))
    sampler = Sampler(graphdef, cfg, max_new_tokens=32, eos_ids=[tokenizer.eos_token_id],
                      pad_id=tokenizer.pad_token_id)
    out = sampler(p, None, tokens, mask, jax.random.key(0), SamplingParams(greedy=True))
    with torch.no_grad():
        ref = smollm2_torch.generate(
            input_ids=torch.tensor(tokens, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long), max_new_tokens=32,
            do_sample=False, pad_token_id=tokenizer.pad_token_id).numpy()[:, tokens.shape[1]:]
    for row in range(len(CHATS)):
        n = int(out.lengths[row])
        ours = np.asarray(out.tokens[row, :n])
        assert ours.tolist() == ref[row, :n].tolist(), (
            f"row {row}: {tokenizer.decode(ours)!r} vs {tokenizer.decode(ref[row, :n])!r}")
        # transformers pads finished rows with the pad token; nothing after our EOS either.
        assert (ref[row, n:] == tokenizer.pad_token_id).all()
    assert int(out.lengths.max()) >= 8, "the replies should be real sentences"
