"""Self-judgment: pairwise scores read off the judge token probabilities.

For a pair (a, b) under principle p, two prompts are built (a shown as A, and b
shown as A), and the next-token distribution after the assistant prefix is read at
the two judge tokens, renormalised over the two (a 2-way softmax):

    score_p(a) = [P(A | a first, b second) + P(B | b first, a second)] / 2,
    score_p(b) = 1 - score_p(a).

Across principles: majority vote of per-principle wins (score > 1/2); a tie in wins
is broken by the mean score; an exact tie (mean score = 1/2) goes to a.
Position consistency: both orders prefer the same response.

Nothing is generated. One jitted forward judges a whole batch and does only the
work the answer needs:
- the prefix both orders share (chat header, instructions, context) is computed
  once into a KV cache, which the two orders' suffixes then extend;
- logits are computed for the last position only (never [B, T, V]).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sjjax.data.templates import JudgePromptBuilder
from sjjax.model.kv_cache import KVCache
from sjjax.model.transformer import merge_params
from sjjax.sampling import bucket, left_pad


class JudgeBatch(NamedTuple):
    """Left-padded judge prompts for R = pairs x principles rows (row = i * P + p).

    prefix_tokens/mask [R, Tp]: shared by both orders.
    suffix_tokens/mask [R, 2, Ts]: order 0 shows a first, order 1 shows b first.
    """
    prefix_tokens: np.ndarray
    prefix_mask: np.ndarray
    suffix_tokens: np.ndarray
    suffix_mask: np.ndarray


@dataclasses.dataclass
class Judgement:
    """Results for N pairs under P principles (score = probability that a is better)."""
    order_probs: np.ndarray      # [N, P, 2] P(A) in order 0 (a first), P(A) in order 1 (b first)
    principle_scores: np.ndarray  # [N, P] score_p(a)
    scores: np.ndarray           # [N] mean over principles of score_p(a)
    a_wins: np.ndarray           # [N] bool, the vote
    consistent: np.ndarray       # [N, P] bool, both orders prefer the same response
    ties: int                    # pairs decided by the tie-break
    trimmed: int                 # prompts whose context or responses were trimmed

    @property
    def position_consistency(self) -> float:
        return float(self.consistent.mean()) if self.consistent.size else float("nan")


def aggregate(order_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                 np.ndarray, int]:
    """[N, P, 2] P(A) per order -> (principle scores [N,P], mean [N], a_wins [N],
    consistent [N,P], ties): the paper's semantics."""
    p = np.asarray(order_probs, np.float64)
    principle_scores = (p[..., 0] + (1.0 - p[..., 1])) / 2.0
    mean = principle_scores.mean(axis=1)
    wins_a = (principle_scores > 0.5).sum(axis=1)
    wins_b = (principle_scores < 0.5).sum(axis=1)
    tie = wins_a == wins_b
    a_wins = np.where(tie, mean >= 0.5, wins_a > wins_b)
    consistent = (p[..., 0] > 0.5) == (p[..., 1] < 0.5)
    return principle_scores, mean, a_wins, consistent, int(tie.sum())


def _judge_probs(graphdef, params, lora, prefix_tokens, prefix_mask, suffix_tokens,
                 suffix_mask, token_ids, *, use_lora: bool):
    """-> [R, 2] P(first judge token) per order, 2-way softmax, float32."""
    model = merge_params(graphdef, params, lora)
    r, tp = prefix_tokens.shape
    ts = suffix_tokens.shape[-1]
    cache = KVCache.empty(model.config, r, tp + ts)
    if tp:  # the shared prefix, once per row; its logits are never needed
        _, cache = model(prefix_tokens, prefix_mask, cache, lora=use_lora, logits="none")
    # Both orders continue the same prefix: rows (i, order 0), (i, order 1).
    cache = cache.repeat(2)
    logits, _ = model(suffix_tokens.reshape(2 * r, ts), suffix_mask.reshape(2 * r, ts), cache,
                      lora=use_lora, logits="last")
    pair_logits = logits[:, jnp.asarray(token_ids)]  # [2R, 2]
    return jax.nn.softmax(pair_logits, axis=-1)[:, 0].reshape(r, 2)


def split_point(prefixes: Sequence[Sequence[int]], suffix_lengths: Sequence[int], rows: int,
                multiple: int) -> tuple[int, int]:
    """Where the shared stage ends: (Tp, Ts) minimising the tokens computed,
    rows * Tp + 2 * rows * Ts, with lengths rounded up to `multiple`.

    Rows are left-padded to a common length in each stage, so splitting every prompt
    exactly where the responses start wastes padding when one row has the longest
    context and another the longest responses. A row's shared tokens beyond Tp are
    computed with each order instead (twice), whenever that costs less than padding."""
    lengths = [len(p) for p in prefixes]
    best = None
    for tp in range(0, bucket(max(lengths, default=1), multiple) + 1, multiple):
        ts = bucket(max((s + max(0, p - tp) for p, s in zip(lengths, suffix_lengths)),
                        default=1), multiple)
        cost = rows * tp + 2 * rows * ts
        if best is None or cost < best[0]:
            best = (cost, tp, ts)
    return best[1], best[2]


class Judge:
    """Batches pairs into bucketed judge prompts and scores them with one jitted call
    per batch."""

    def __init__(self, graphdef, builder: JudgePromptBuilder, *, batch_size: int = 8,
                 max_length: int | None = None, length_bucket: int = 16, pad_id: int = 0):
        self.graphdef = graphdef
        self.builder = builder
        self.batch_size = batch_size
        self.max_length = max_length
        self.length_bucket = length_bucket
        self.pad_id = pad_id
        self._fn = jax.jit(_judge_probs, static_argnums=(0,), static_argnames=("use_lora",))

    @property
    def principles(self) -> list[str]:
        return self.builder.principles

    def build_batch(self, pairs: Sequence[tuple[str, str, str]], rows: int | None = None):
        """pairs of (context, a, b) -> (JudgeBatch, trimmed count); `rows` pads the
        row count (so every call has the same shape)."""
        prompts = []
        for context, a, b in pairs:
            for principle in self.principles:
                ab = self.builder.prompt(principle, context, a, b, self.max_length)
                ba = self.builder.prompt(principle, context, b, a, self.max_length)
                # Trimming is symmetric in (a, b), so both orders share the prefix.
                assert ab.prefix == ba.prefix, "judge prefixes of the two orders differ"
                prompts.append((ab, ba))
        trimmed = sum(bool(x.context_trimmed or x.responses_trimmed)
                      for pair in prompts for x in pair)
        n_rows = max(rows or 0, len(prompts))
        prefixes = [ab.prefix for ab, _ in prompts]
        suffixes = [len(ab.suffix) for ab, _ in prompts]
        tp, ts = split_point(prefixes, suffixes, n_rows, self.length_bucket)
        empty = [[]] * (n_rows - len(prompts))  # rows padding the batch to `rows`
        prefix_tokens, prefix_mask = left_pad(
            [ab.prefix[:tp] for ab, _ in prompts] + empty, self.pad_id, width=tp)
        # Rows (i, order 0), (i, order 1); shared tokens past tp are computed per order.
        suffixes = [ab.prefix[tp:] + prompt.suffix
                    for ab, ba in prompts for prompt in (ab, ba)]
        suffix_tokens, suffix_mask = left_pad(suffixes + empty + empty, self.pad_id, width=ts)
        return JudgeBatch(prefix_tokens, prefix_mask, suffix_tokens.reshape(n_rows, 2, ts),
                          suffix_mask.reshape(n_rows, 2, ts)), trimmed

    def order_probs(self, params, lora, batch: JudgeBatch, use_lora: bool = True) -> np.ndarray:
        """[R, 2] P(A) per order for a built batch."""
        out = self._fn(self.graphdef, params, lora or {}, batch.prefix_tokens, batch.prefix_mask,
                       batch.suffix_tokens, batch.suffix_mask, self.builder.token_ids,
                       use_lora=use_lora)
        return np.asarray(out)

    def __call__(self, params, lora, pairs: Sequence[tuple[str, str, str]],
                 use_lora: bool = True) -> Judgement:
        """Judges pairs of (context, response_a, response_b)."""
        p = len(self.principles)
        per_call = max(1, self.batch_size)
        probs, trimmed = [], 0
        for start in range(0, len(pairs), per_call):
            chunk = pairs[start:start + per_call]
            batch, t = self.build_batch(chunk, rows=per_call * p)
            trimmed += t
            probs.append(self.order_probs(params, lora, batch, use_lora)[:len(chunk) * p])
        order_probs = (np.concatenate(probs) if probs else np.zeros((0, 2))).reshape(-1, p, 2)
        scores, mean, a_wins, consistent, ties = aggregate(order_probs)
        return Judgement(order_probs, scores, mean, a_wins, consistent, ties, trimmed)

    def compiled_count(self) -> int:
        return self._fn._cache_size()


@functools.partial(jax.jit, static_argnums=(0,))
def _full_forward_last(graphdef, params, lora, tokens, mask):
    return merge_params(graphdef, params, lora)(tokens, mask, logits="last")[0]


def naive_order_probs(graphdef, params, builder: JudgePromptBuilder,
                      pairs: Sequence[tuple[str, str, str]], pad_id: int = 0,
                      lora=None) -> np.ndarray:
    """Reference path without prefix sharing: each prompt in full. [N, P, 2]."""
    rows = []
    for context, a, b in pairs:
        for principle in builder.principles:
            rows += [builder.prompt(principle, context, a, b).ids,
                     builder.prompt(principle, context, b, a).ids]
    tokens, mask = left_pad(rows, pad_id, multiple=1)
    logits = np.asarray(_full_forward_last(graphdef, params, lora or {}, tokens, mask))
    pair = logits[:, list(builder.token_ids)]
    pair = np.exp(pair - pair.max(-1, keepdims=True))
    probs = pair[:, 0] / pair.sum(-1)
    return probs.reshape(len(pairs), len(builder.principles), 2)
