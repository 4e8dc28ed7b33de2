"""sjjax.generation.Responder: the same samples as a hand-driven Sampler call on the
same keys, in prompt order, with the batching and key rules of its docstring."""

import jax
import numpy as np
import pytest

from sjjax.generation import Responder
from sjjax.sampling import Sampler, SamplingParams, decode_response, left_pad

CONVERSATIONS = [[{"role": "user", "content": text}] for text in
                 ("say 1", "sort 3 1 2", "hi", "max of 4 9 2 and then some more words", "x")]
SAMPLING = SamplingParams(temperature=1.0, top_p=0.9)


@pytest.fixture(scope="module")
def policy(tiny_policy):
    return tiny_policy


def _responder(policy, batch_size, eos_ids):
    return Responder(policy.graphdef, policy.model_config, policy.tokenizer, max_new_tokens=8,
                     eos_ids=eos_ids, batch_size=batch_size, prompt_bucket=32)


def _by_hand(policy, sampler: Sampler, rows, key, eos_ids, n):
    """One Sampler call -> per row (tokens, text)."""
    tok = policy.tokenizer
    ids, mask = left_pad(rows, tok.pad_token_id, 32)
    out = sampler(policy.params, policy.lora, ids, mask, key, SAMPLING, num_samples=n)
    gen, lens = np.asarray(out.tokens), np.asarray(out.lengths)
    return [(gen[r, :lens[r]], decode_response(tok, gen[r, :lens[r]], eos_ids))
            for r in range(len(gen))]


def test_batched_replies_equal_hand_driven_sampler_calls(policy):
    # Many EOS ids, so that rows stop at different lengths.
    eos_ids = tuple(sorted({policy.tokenizer.eos_token_id, *range(3, 200, 4)}))
    responder = _responder(policy, batch_size=2, eos_ids=eos_ids)
    key = jax.random.key(3)
    out = responder.reply(policy.params, policy.lora, CONVERSATIONS, key, SAMPLING,
                          num_samples=3)
    assert out.lengths.shape == (5, 3) and len(out.texts) == len(out.tokens) == 5
    ids = responder.encode(CONVERSATIONS)
    expected = []
    for start in (0, 2, 4):  # chunks of 2; the last one filled up with its last prompt
        chunk = ids[start:start + 2]
        rows = _by_hand(policy, responder.sampler, chunk + [chunk[-1]] * (2 - len(chunk)),
                        jax.random.fold_in(key, start), eos_ids, 3)
        expected += [rows[3 * i:3 * i + 3] for i in range(len(chunk))]
    for i, samples in enumerate(expected):
        for j, (tokens, text) in enumerate(samples):
            np.testing.assert_array_equal(out.tokens[i][j], tokens)
            assert out.lengths[i, j] == len(tokens)
            assert out.texts[i][j] == text
    assert len(set(out.lengths.ravel().tolist())) > 1  # rows did stop at different steps
    # already-encoded prompts: the same responses
    again = responder.sample(policy.params, policy.lora, ids, key, SAMPLING, num_samples=3)
    assert again.texts == out.texts
    np.testing.assert_array_equal(again.lengths, out.lengths)


def test_one_batch_uses_the_key_itself_and_keeps_prompt_order(policy):
    eos_ids = policy.eos_ids
    responder = _responder(policy, batch_size=None, eos_ids=eos_ids)
    key = jax.random.key(5)
    out = responder.reply(policy.params, policy.lora, CONVERSATIONS, key, SAMPLING, 2)
    rows = _by_hand(policy, responder.sampler, responder.encode(CONVERSATIONS), key, eos_ids, 2)
    assert [t for texts in out.texts for t in texts] == [text for _, text in rows]

    greedy = SamplingParams(greedy=True)
    forward = responder.reply(policy.params, policy.lora, CONVERSATIONS, key, greedy)
    backward = responder.reply(policy.params, policy.lora, CONVERSATIONS[::-1], key, greedy)
    assert forward.texts == backward.texts[::-1]
    assert responder.reply(policy.params, policy.lora, [], key, greedy).lengths.shape == (0, 1)
