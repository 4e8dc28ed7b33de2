"""Compiled sampling: jitted prefill + `lax.while_loop` decoding over a KV cache.

    sampler = Sampler(graphdef, model_config, max_new_tokens=128, eos_ids=(2,), pad_id=2)
    out = sampler(params, lora, tokens, mask, key, SamplingParams(top_p=0.9), num_samples=2)
    out.tokens [B*n, N], out.lengths [B*n], out.logprobs [B*n, N]

- Prompts are left-padded [B, T] (`left_pad`); `num_samples` rows per prompt are drawn
  from one prefill (the prompt's cache is computed once and repeated).
- Each row stops at its first EOS (kept in the output and counted in its length)
  or after `max_new_tokens`; the loop ends when every row has stopped.
- logprobs are log p(token) under the *unmodified* model distribution (temperature 1,
  no truncation), i.e. what a policy-gradient or DPO loss needs.
- The same key gives the same samples. One compilation per (batch, prompt length,
  num_samples, sampling params) bucket; the KV cache buffer is donated back and
  forth between calls, so decoding allocates nothing new per call.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sjjax.model.kv_cache import KVCache
from sjjax.model.transformer import merge_params


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen. greedy overrides the others. Applied in the
    order transformers uses: temperature, then top-k, then top-p."""
    temperature: float = 1.0
    top_k: int = 0      # 0 = off
    top_p: float = 1.0  # 1.0 = off
    greedy: bool = False

    def __post_init__(self):
        if self.temperature <= 0 and not self.greedy:
            raise ValueError("temperature must be > 0 (use greedy=True for argmax decoding)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError(f"top_k={self.top_k} must be >= 0")


class SampleOutput(NamedTuple):
    tokens: jax.Array    # [R, N] int32, pad after each row's end
    lengths: jax.Array   # [R] int32, number of generated tokens (EOS included)
    logprobs: jax.Array  # [R, N] float32, 0 after each row's end


# Top-p looks for the nucleus among this many most likely tokens first: sorting the
# vocabulary is slow on XLA:CPU (100 ms for [8, 49152], against 2 ms for this top_k).
CANDIDATES = 256


def sampling_logits(logits: jax.Array, params: SamplingParams) -> jax.Array:
    """Model logits [B, V] -> logits [B, V] of the distribution a token is drawn from:
    divided by the temperature, then cut (-inf) to the top_k most likely tokens, then to
    the smallest set of most likely tokens whose mass reaches top_p. A token tied with
    the least likely one kept is kept too (as transformers' top-k does)."""
    logits = logits.astype(jnp.float32) / params.temperature
    if 0 < params.top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, params.top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if params.top_p < 1.0:
        probs = jax.nn.softmax(logits, axis=-1)
        logits = jnp.where(probs < _nucleus_threshold(probs, params.top_p), -jnp.inf, logits)
    return logits


def _nucleus_threshold(probs: jax.Array, top_p: float) -> jax.Array:
    """Probabilities [B, V] -> [B, 1] the probability of each row's least likely token in
    the nucleus (the tokens with less than top_p of mass before them, most likely first)."""
    top = jax.lax.top_k(probs, min(CANDIDATES, probs.shape[-1]))[0]  # [B, C], descending
    in_nucleus = jnp.cumsum(top, axis=-1) - top < top_p
    from_top = jnp.min(jnp.where(in_nucleus, top, jnp.inf), axis=-1, keepdims=True)

    def bisection(_):  # some row's nucleus is larger: the largest t with mass(p >= t) >= top_p
        def halve(_, bounds):
            lo, hi = bounds
            mid = (lo + hi) / 2
            enough = jnp.sum(jnp.where(probs >= mid, probs, 0.0), -1, keepdims=True) >= top_p
            return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid)
        hi = jnp.max(probs, axis=-1, keepdims=True) * (1 + 1e-6)
        return jax.lax.fori_loop(0, 32, halve, (jnp.zeros_like(hi), hi))[0]

    return jax.lax.cond(jnp.all(top.sum(-1) >= top_p), lambda _: from_top, bisection, None)


def draw(logits: jax.Array, key: jax.Array, block: int = 256) -> jax.Array:
    """One token [B] int32 per row of softmax(logits [B, V]), by inverse CDF on one
    uniform per row, in two levels: a block of `block` tokens, then a token in it.
    (jax.random.categorical draws a Gumbel per token, and a cumulative sum over a whole
    vocabulary is slow on XLA:CPU: 3-10x the time on [8, 49152].)"""
    b, v = logits.shape
    probs = jax.nn.softmax(logits, axis=-1)
    blocks = jnp.pad(probs, ((0, 0), (0, -v % block))).reshape(b, -1, block)
    mass = blocks.sum(-1)                                              # [B, V / block]
    target = jax.random.uniform(key, (b,), jnp.float32) * mass.sum(-1)
    chosen = _first_past(mass, target)                                 # [B]
    target = target - jnp.take_along_axis(jnp.cumsum(mass, -1) - mass, chosen[:, None], 1)[:, 0]
    within = jnp.take_along_axis(blocks, chosen[:, None, None], 1)[:, 0]  # [B, block]
    return chosen * block + _first_past(within, target)


def _first_past(weights: jax.Array, target: jax.Array) -> jax.Array:
    """[B] int32 index of the entry of weights [B, N] (>= 0) where the running sum passes
    target [B]; clipped to entries of positive weight (rounding can put target just
    outside [0, total))."""
    index = jnp.sum(jnp.cumsum(weights, -1) <= target[:, None], axis=-1)
    ids = jnp.arange(weights.shape[-1])
    first = jnp.min(jnp.where(weights > 0, ids, ids.size), axis=-1)
    last = jnp.max(jnp.where(weights > 0, ids, 0), axis=-1)
    return jnp.clip(index, first, last).astype(jnp.int32)


def choose_tokens(logits: jax.Array, key: jax.Array, params: SamplingParams) -> jax.Array:
    """Float32 logits [B, V] -> next tokens [B] int32: the first maximum if greedy, else
    a draw from `sampling_logits`."""
    if params.greedy:  # the first maximum, as jnp.argmax (whose reduction is 3x slower on XLA:CPU)
        ids = jnp.arange(logits.shape[-1], dtype=jnp.int32)
        is_max = logits == jnp.max(logits, axis=-1, keepdims=True)
        return jnp.min(jnp.where(is_max, ids, ids.size), axis=-1)
    return draw(sampling_logits(logits, params), key)


def bucket(n: int, multiple: int = 32) -> int:
    """Rounds a prompt length up, to limit the number of compiled shapes."""
    return max(multiple, -(-n // multiple) * multiple)


def left_pad(rows, pad_id: int, multiple: int = 32,
             width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Token rows -> left-padded tokens [B, T] int32 and mask [B, T] bool (True on real
    tokens). T is `width` if given, else the longest row rounded up to a multiple of
    `multiple` (few distinct shapes, few compilations). Rows may be empty."""
    longest = max((len(r) for r in rows), default=0)
    if width is None:
        width = bucket(longest, multiple)
    elif longest > width:
        raise ValueError(f"a row of {longest} tokens does not fit in width {width}")
    tokens = np.full((len(rows), width), pad_id, np.int32)
    mask = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        tokens[i, width - len(r):] = r
        mask[i, width - len(r):] = True
    return tokens, mask


def decode_response(tokenizer, ids, eos_ids) -> str:
    """Generated ids (EOS included) -> the response text, special tokens dropped."""
    ids = [int(t) for t in ids if int(t) not in eos_ids]
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def decode_chunk_ends(max_new_tokens: int, chunks: int) -> list[int]:
    """The decode steps at which each of (at most) `chunks` decoding loops ends, e.g.
    (128, 4) -> [32, 64, 96, 128]."""
    size = -(-max_new_tokens // chunks)
    return list(range(size, max_new_tokens, size)) + [max_new_tokens]


class DecodeState(NamedTuple):
    """The decoding loop's carry, for R = B * num_samples rows and N = max_new_tokens."""
    step: jax.Array      # [] int32, decode steps taken (the column written next)
    logits: jax.Array    # [R, V] float32, each row's next-token logits
    cache: KVCache       # R rows; prompt and generated tokens so far
    key: jax.Array       # PRNG key, split once per step
    tokens: jax.Array    # [R, N] int32, generated tokens, pad after a row's end
    logprobs: jax.Array  # [R, N] float32, log p(token) under the model, 0 after the end
    done: jax.Array      # [R] bool, the row has produced an EOS


def _sample(graphdef, params, lora, cache: KVCache, tokens, mask, key, *,
            sampling: SamplingParams, num_samples: int, max_new_tokens: int,
            eos_ids: tuple[int, ...], pad_id: int, use_lora: bool, decode_chunks: int):
    """Prefill, then `decode_chunks` while_loops of decode steps. cache: an empty
    buffer of R rows (donated). Returns (SampleOutput, the cache buffer)."""
    model = merge_params(graphdef, params, lora)

    def forward(tokens, mask, cache, cache_window=None):
        """-> (logits [B, V] of the last slot, updated cache)."""
        return model(tokens, mask, cache, lora=use_lora, logits="last",
                     cache_window=cache_window)

    b = tokens.shape[0]
    rows = b * num_samples
    if num_samples == 1:
        logits, cache = forward(tokens, mask, cache)
    else:
        # Prefill each prompt once, then give each of its n samples a copy of the cache.
        prompt_cache = KVCache.empty(model.config, b, cache.capacity, cache.k.dtype)
        logits, prompt_cache = forward(tokens, mask, prompt_cache)
        cache = prompt_cache.repeat(num_samples)
        logits = jnp.repeat(logits, num_samples, axis=0)
    eos = jnp.asarray(eos_ids, jnp.int32)

    def step(s: DecodeState, cache_window: int) -> DecodeState:
        key, sub = jax.random.split(s.key)
        token = choose_tokens(s.logits, sub, sampling)
        # log p(token) = logit - logsumexp: no [R, V] log-softmax array per step.
        logprob = (jnp.take_along_axis(s.logits, token[:, None], 1)[:, 0]
                   - jax.nn.logsumexp(s.logits, axis=-1))
        token = jnp.where(s.done, pad_id, token)
        # A finished row feeds its pad as a masked token: it changes nothing.
        logits, cache = forward(token[:, None], ~s.done[:, None], s.cache, cache_window)
        return DecodeState(
            step=s.step + 1, logits=logits, cache=cache, key=key,
            tokens=s.tokens.at[:, s.step].set(token),
            logprobs=s.logprobs.at[:, s.step].set(jnp.where(s.done, 0.0, logprob)),
            done=s.done | jnp.isin(token, eos))

    state = DecodeState(step=jnp.zeros((), jnp.int32), logits=logits, cache=cache, key=key,
                        tokens=jnp.full((rows, max_new_tokens), pad_id, jnp.int32),
                        logprobs=jnp.zeros((rows, max_new_tokens), jnp.float32),
                        done=jnp.zeros((rows,), bool))
    # Decode in a few chunks of steps, each a loop that attends to only the cache slots
    # written before its last step: a step's cost grows with the slots it reads.
    for end in decode_chunk_ends(max_new_tokens, decode_chunks):
        # Step s writes slot T + s and reads the slots before it (the prompt took 0..T-1).
        window = tokens.shape[1] + end - 1
        state = jax.lax.while_loop(
            lambda s, end=end: (s.step < end) & ~jnp.all(s.done),
            functools.partial(step, cache_window=window), state)
    # Length = up to and including the first EOS (pad may equal EOS, so count positions).
    is_eos = jnp.isin(state.tokens, eos)
    lengths = jnp.where(jnp.any(is_eos, 1), jnp.argmax(is_eos, 1) + 1, max_new_tokens)
    return SampleOutput(state.tokens, lengths.astype(jnp.int32), state.logprobs), state.cache


class Sampler:
    """Holds the compiled sampling function and the KV cache buffer it donates."""

    def __init__(self, graphdef, model_config, *, max_new_tokens: int, eos_ids, pad_id: int,
                 cache_dtype=None, decode_chunks: int = 4):
        """decode_chunks: decoding runs as this many loops, each attending to only the
        cache slots written before its last step (a step's cost grows with the slots it
        reads); each is one more copy of the decode step to compile."""
        self.graphdef = graphdef
        self.config = model_config
        self.max_new_tokens = int(max_new_tokens)
        self.eos_ids = tuple(int(e) for e in np.atleast_1d(eos_ids))
        self.pad_id = int(pad_id)
        self.cache_dtype = cache_dtype or model_config.compute_dtype
        if decode_chunks < 1:
            raise ValueError(f"decode_chunks={decode_chunks} must be >= 1")
        self.decode_chunks = int(decode_chunks)
        self._cache: KVCache | None = None
        self._fn = jax.jit(_sample, static_argnums=(0,), donate_argnums=(3,),
                           static_argnames=("sampling", "num_samples", "max_new_tokens",
                                            "eos_ids", "pad_id", "use_lora",
                                            "decode_chunks"))

    def _cache_for(self, rows: int, capacity: int) -> KVCache:
        cache = self._cache
        if cache is None or cache.positions.shape != (rows, capacity):
            cache = KVCache.empty(self.config, rows, capacity, self.cache_dtype)
        # Reset positions and index; stale k/v in invalid slots are masked, never read.
        return cache._replace(positions=jnp.full((rows, capacity), -1, jnp.int32),
                              index=jnp.zeros((), jnp.int32))

    def __call__(self, params, lora, tokens, mask, key, sampling: SamplingParams = SamplingParams(),
                 num_samples: int = 1, use_lora: bool = True) -> SampleOutput:
        """tokens, mask: left-padded [B, T]. Returns SampleOutput with B*num_samples rows,
        the n samples of prompt i in rows i*n .. i*n+n-1."""
        tokens = jnp.asarray(tokens, jnp.int32)
        b, t = tokens.shape
        cache = self._cache_for(b * num_samples, t + self.max_new_tokens)
        out, self._cache = self._fn(self.graphdef, params, lora or {}, cache, tokens,
                                    jnp.asarray(mask, bool), key, sampling=sampling,
                                    num_samples=num_samples, max_new_tokens=self.max_new_tokens,
                                    eos_ids=self.eos_ids, pad_id=self.pad_id, use_lora=use_lora,
                                    decode_chunks=self.decode_chunks)
        return out

    def compiled_count(self) -> int:
        """How many shape/config buckets have been compiled (for recompilation tests)."""
        return self._fn._cache_size()


@functools.partial(jax.jit, static_argnums=(0,))
def _forward_logits(graphdef, params, lora, tokens, mask):
    return merge_params(graphdef, params, lora)(tokens, mask)[0]


def forward_logits(graphdef, params, tokens, mask, lora=None):
    """Full-sequence logits [B, T, V] (jitted); a convenience for tests and tools."""
    return _forward_logits(graphdef, params, lora or {}, jnp.asarray(tokens), jnp.asarray(mask))
