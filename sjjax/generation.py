"""A model's chat replies: the one encode -> left-pad -> sample -> decode path.

    responder = Responder.from_config(policy, config.sampling)
    out = responder.reply(params, lora, conversations, key, SamplingParams(top_p=0.9),
                          num_samples=2)
    out.texts[i][j], out.tokens[i][j], out.lengths[i, j]     # sample j of prompt i
    out = responder.sample(params, lora, prompt_ids, key, sampling)   # already encoded

Conversations are lists of chat messages, encoded with the chat template up to the
assistant header (`ChatEncoder.encode_prompt`). Responses come back in prompt order.
The parameters, LoRA tree and key are arguments of every call (a self-training policy
changes every step); the compiled sampler and its KV cache stay with the Responder.

Batching and keys (what makes a seed give the same samples again):
- batch_size=N: the prompts in chunks of N, in order. The last chunk is filled up to N
  with copies of its last prompt (one compiled shape per prompt-length bucket), whose
  samples are dropped. The chunk starting at prompt `start` is sampled with
  `jax.random.fold_in(key, start)`.
- batch_size=None: one Sampler call on all the prompts, with `key` itself.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from sjjax.data.templates import ChatEncoder
from sjjax.sampling import Sampler, SamplingParams, decode_response, left_pad


@dataclasses.dataclass
class Responses:
    """num_samples responses for each of P prompts, in prompt order."""
    tokens: list[list[np.ndarray]]  # [P][n] generated ids, EOS included (as the sampler stops)
    lengths: np.ndarray             # [P, n] int32, len(tokens[i][j])
    texts: list[list[str]]          # [P][n] decoded; EOS and special tokens dropped, stripped


class Responder:
    """Samples replies of one model graph in batches (see the module docstring)."""

    def __init__(self, graphdef, model_config, tokenizer, *, max_new_tokens: int, eos_ids,
                 batch_size: int | None = None, prompt_bucket: int = 32, bos=()):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1 (or None: one batch)")
        self.tokenizer = tokenizer
        self.encoder = ChatEncoder(tokenizer, bos=bos)
        self.eos_ids = tuple(eos_ids)
        self.pad_id = tokenizer.pad_token_id
        self.batch_size = batch_size
        self.prompt_bucket = prompt_bucket
        self.sampler = Sampler(graphdef, model_config, max_new_tokens=max_new_tokens,
                               eos_ids=self.eos_ids, pad_id=self.pad_id)

    @classmethod
    def from_config(cls, policy, sampling_config, *, graphdef=None,
                    batched: bool = True) -> "Responder":
        """For a `sjjax.phases.common.Policy` and `config.sampling` (max_new_tokens,
        prompt_bucket, and batch_size unless batched=False). graphdef: another graph of
        the same model (e.g. the policy's graph with LoRA adapters)."""
        return cls(graphdef if graphdef is not None else policy.graphdef, policy.model_config,
                   policy.tokenizer, max_new_tokens=sampling_config.max_new_tokens,
                   eos_ids=policy.eos_ids,
                   batch_size=sampling_config.batch_size if batched else None,
                   prompt_bucket=sampling_config.prompt_bucket, bos=policy.bos)

    def encode(self, conversations: Sequence[Sequence[dict]]) -> list[np.ndarray]:
        """Conversations -> prompt ids ending with the assistant header."""
        return [self.encoder.encode_prompt(list(c)) for c in conversations]

    def reply(self, params, lora, conversations: Sequence[Sequence[dict]], key: jax.Array,
              sampling: SamplingParams, num_samples: int = 1, use_lora: bool = True
              ) -> Responses:
        """num_samples replies to each conversation."""
        return self.sample(params, lora, self.encode(conversations), key, sampling,
                           num_samples, use_lora)

    def sample(self, params, lora, prompt_ids: Sequence[Sequence[int]], key: jax.Array,
               sampling: SamplingParams, num_samples: int = 1, use_lora: bool = True
               ) -> Responses:
        """num_samples responses to each already-encoded prompt."""
        tokens, texts, lengths = [], [], []
        size = self.batch_size or max(len(prompt_ids), 1)
        for start in range(0, len(prompt_ids), size):
            chunk = list(prompt_ids[start:start + size])
            if self.batch_size is None:
                rows, chunk_key = chunk, key
            else:  # a fixed batch shape: fill up with copies of the last prompt
                rows = chunk + [chunk[-1]] * (size - len(chunk))
                chunk_key = jax.random.fold_in(key, start)
            ids, mask = left_pad(rows, self.pad_id, self.prompt_bucket)
            out = self.sampler(params, lora, ids, mask, chunk_key, sampling,
                               num_samples=num_samples, use_lora=use_lora)
            gen, lens = np.asarray(out.tokens), np.asarray(out.lengths)
            for i in range(len(chunk)):
                rows_i = range(i * num_samples, (i + 1) * num_samples)
                tokens.append([gen[r, :lens[r]] for r in rows_i])
                texts.append([decode_response(self.tokenizer, t, self.eos_ids)
                              for t in tokens[-1]])
                lengths.append(lens[i * num_samples:(i + 1) * num_samples])
        lengths = np.asarray(lengths, np.int32).reshape(len(prompt_ids), num_samples)
        return Responses(tokens, lengths, texts)
