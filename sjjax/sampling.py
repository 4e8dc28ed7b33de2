"""Compiled sampling: jitted prefill + `lax.while_loop` decoding over a KV cache.

    sampler = Sampler(graphdef, max_new_tokens=128, eos_ids=(2,), pad_id=2)
    out = sampler(params, lora, tokens, mask, key, SamplingParams(top_p=0.9), num_samples=2)
    out.tokens [B*n, N], out.lengths [B*n], out.logprobs [B*n, N]

- Prompts are left-padded [B, T]; `num_samples` rows per prompt are drawn from one
  prefill (the prompt's cache is computed once and repeated).
- Each row stops at its first EOS (kept in the output and counted in its length)
  or after `max_new_tokens`; the loop ends when every row has stopped.
- logprobs are log p(token) under the *unmodified* model distribution (temperature 1,
  no truncation), i.e. what a policy-gradient or DPO loss needs.
- The same key gives the same samples. One compilation per (batch, prompt length,
  num_samples, sampling params) bucket; the KV cache buffer is donated back and
  forth between calls, so decoding allocates nothing new per call.
- Decode steps of a float32 model on one CPU device run their matrix products on
  sjjax's CPU decode kernel (`sjjax.kernels.cpu_matvec`, 1.6x XLA's matmuls at batch 8);
  `decode_kernel=False` keeps XLA's.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sjjax.kernels import cpu_matvec
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


def process_logits(logits: jax.Array, params: SamplingParams) -> jax.Array:
    """Float32 logits [..., V] -> logits of the sampling distribution (-inf where cut)."""
    logits = logits.astype(jnp.float32) / params.temperature
    neg_inf = jnp.finfo(jnp.float32).min
    if params.top_k and params.top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, params.top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, neg_inf, logits)
    if params.top_p < 1.0:
        # Keep the smallest set of most likely tokens whose mass reaches top_p. Only the
        # sorted *values* are needed: find the smallest kept logit and cut below it.
        sorted_logits = jnp.flip(jnp.sort(logits, axis=-1), axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        keep = mass_before < params.top_p
        threshold = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < threshold, neg_inf, logits)
    return logits


# Top-k / top-p look at this many most likely tokens first (lax.top_k is cheap); only if
# they hold less than top_p of the mass does a row fall back to sorting the vocabulary.
CANDIDATES = 256


# Decode steps of up to this many rows run on the CPU decode kernel. Its advantage
# shrinks as a step turns from reading weights to arithmetic: SmolLM2's layers on 2 EPYC
# cores took 1.6x less time than XLA's matmuls at 8 rows, 1.2x at 128, 1.1x at 256, and
# the same at 512.
DECODE_KERNEL_MAX_ROWS = 256


# Draws over more entries than this take the inverse CDF in two levels (blocks of this
# size, then entries of the chosen block): a cumulative sum over a whole vocabulary is
# slow on XLA:CPU (0.80 ms against 0.19 ms for the two levels on [8, 49152]).
CDF_BLOCK = 256


def _inverse_cdf(probs: jax.Array, key: jax.Array) -> jax.Array:
    """One draw per row from unnormalised probs [B, N] (>= 0, each row with some mass):
    a single uniform per row instead of a Gumbel per vocabulary entry. Exact, and never
    returns an entry of probability 0."""
    b, n = probs.shape
    u = jax.random.uniform(key, (b,), jnp.float32)
    if n <= CDF_BLOCK:
        return _search(probs, u * probs.sum(-1))
    blocks = -(-n // CDF_BLOCK)
    by_block = jnp.pad(probs, ((0, 0), (0, blocks * CDF_BLOCK - n))).reshape(b, blocks, CDF_BLOCK)
    block_mass = by_block.sum(-1)                                      # [B, blocks]
    target = u * block_mass.sum(-1)
    block = _search(block_mass, target)                                # [B]
    mass_before = jnp.take_along_axis(jnp.cumsum(block_mass, -1) - block_mass,
                                      block[:, None], 1)[:, 0]
    within = jnp.take_along_axis(by_block, block[:, None, None], 1)[:, 0]  # [B, CDF_BLOCK]
    return block * CDF_BLOCK + _search(within, target - mass_before)


def _search(weights: jax.Array, target: jax.Array) -> jax.Array:
    """[B] index of the first entry of weights [B, N] whose running sum exceeds target [B],
    clipped to the first and last entries of positive weight (rounding can put target
    just outside [0, total))."""
    n = weights.shape[-1]
    index = jnp.sum(jnp.cumsum(weights, -1) <= target[:, None], axis=-1)
    positive = weights > 0
    first = jnp.argmax(positive, -1)
    last = n - 1 - jnp.argmax(positive[:, ::-1], -1)
    return jnp.clip(index, first, last).astype(jnp.int32)


def _sample_truncated(logits: jax.Array, key: jax.Array, params: SamplingParams) -> jax.Array:
    """Top-k and/or top-p sampling from temperature-scaled logits [B, V], on the
    CANDIDATES most likely tokens: exact whenever they hold the whole nucleus; otherwise
    the batch falls back to sorting the vocabulary."""
    v = logits.shape[-1]
    k = min(v, max(CANDIDATES, params.top_k))
    vals, idx = jax.lax.top_k(logits, k)                       # [B, k], descending
    probs = jnp.exp(vals - jax.nn.logsumexp(logits, axis=-1, keepdims=True))
    if params.top_k and params.top_k < v:
        probs = jnp.where(jnp.arange(k) < params.top_k, probs, 0.0)
        probs = probs / probs.sum(-1, keepdims=True)
    covered = probs.sum(-1) >= min(params.top_p, 1.0 - 1e-6)  # the nucleus is in the top k
    if params.top_p < 1.0:
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        probs = jnp.where(mass_before < params.top_p, probs, 0.0)
    picked = jnp.take_along_axis(idx, _inverse_cdf(probs, key)[:, None], axis=1)[:, 0]

    def whole_vocabulary(_):
        full = jax.nn.softmax(logits, axis=-1)
        if params.top_k and params.top_k < v:
            full = jnp.where(logits >= vals[:, params.top_k - 1:params.top_k], full, 0.0)
            full = full / full.sum(-1, keepdims=True)
        if params.top_p < 1.0:
            full = jnp.where(full >= _nucleus_threshold(full, params.top_p), full, 0.0)
        return _inverse_cdf(full, key)

    return jax.lax.cond(jnp.all(covered), lambda _: picked, whole_vocabulary,
                        None).astype(jnp.int32)


def _nucleus_threshold(probs: jax.Array, top_p: float, iterations: int = 32) -> jax.Array:
    """[B, 1] the smallest probability in each row's nucleus, by bisection: the largest t
    with sum(p[p >= t]) >= top_p. O(V) per step instead of a sort of the vocabulary."""
    lo = jnp.zeros(probs.shape[:1] + (1,), probs.dtype)
    hi = probs.max(-1, keepdims=True) * (1 + 1e-6)

    def step(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) / 2
        enough = jnp.where(probs >= mid, probs, 0.0).sum(-1, keepdims=True) >= top_p
        return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid)

    return jax.lax.fori_loop(0, iterations, step, (lo, hi))[0]


def _argmax(logits: jax.Array) -> jax.Array:
    """[B, V] -> [B] int32 index of the first maximum, as jnp.argmax, in two plain
    reductions: XLA:CPU's (value, index) reduction for argmax is 4x slower."""
    top = logits.max(-1, keepdims=True)
    index = jnp.arange(logits.shape[-1], dtype=jnp.int32)
    first = jnp.min(jnp.where(logits == top, index, logits.shape[-1]), -1)
    return jnp.minimum(first, logits.shape[-1] - 1)  # a NaN row gives the last index


def choose_tokens(logits: jax.Array, key: jax.Array, params: SamplingParams) -> jax.Array:
    """[B, V] float32 logits -> [B] int32 tokens."""
    if params.greedy:
        return _argmax(logits)
    logits = logits.astype(jnp.float32) / params.temperature
    if (params.top_k and params.top_k < logits.shape[-1]) or params.top_p < 1.0:
        return _sample_truncated(logits, key, params)
    return _inverse_cdf(jax.nn.softmax(logits, axis=-1), key)


def bucket(n: int, multiple: int = 32) -> int:
    """Rounds a prompt length up, to limit the number of compiled shapes."""
    return max(multiple, -(-n // multiple) * multiple)


def left_pad(rows, pad_id: int, multiple: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Token rows -> left-padded tokens [B, T] int32 and mask [B, T] bool, with T rounded
    up to a multiple of `multiple` (few distinct shapes, few compilations)."""
    width = bucket(max(len(r) for r in rows), multiple)
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


def _sample(graphdef, params, lora, cache: KVCache, tokens, mask, key, packed, *,
            sampling: SamplingParams, num_samples: int, max_new_tokens: int,
            eos_ids: tuple[int, ...], pad_id: int, use_lora: bool, decode_chunks: int):
    """packed: None, or `Transformer.pack_for_decoding()` of these params: decode steps
    then run on the CPU decode kernel."""
    model = merge_params(graphdef, params, lora)
    # Computed once per call; the barrier keeps XLA from moving it into the loop body.
    output_kernel = (None if packed is not None
                     else jax.lax.optimization_barrier(model.output_kernel()))

    def forward(tokens, mask, cache, cache_window=None, prefill=False):
        """-> (logits [B, V] of the last slot, updated cache). A prompt's many tokens per
        row run on XLA's matmuls, decode steps (and all logits) on `packed` if given."""
        hidden, cache = model(tokens, mask, cache, lora=use_lora, logits="none",
                              cache_window=cache_window, packed=None if prefill else packed)
        return model.logits(hidden[:, -1], output_kernel=output_kernel, packed=packed), cache

    b = tokens.shape[0]
    rows = b * num_samples
    if num_samples == 1:
        logits, cache = forward(tokens, mask, cache, prefill=True)
    else:
        # Prefill each prompt once, then give each of its n samples a copy of the cache.
        prompt_cache = KVCache.empty(model.config, b, cache.capacity, cache.k.dtype)
        logits, prompt_cache = forward(tokens, mask, prompt_cache, prefill=True)
        cache = prompt_cache.repeat(num_samples)
        logits = jnp.repeat(logits, num_samples, axis=0)
    eos = jnp.asarray(eos_ids, jnp.int32)

    def cond(state, end):
        step, _, _, _, _, _, done = state
        return (step < end) & ~jnp.all(done)

    def body(state, cache_window):
        step, cache, logits, key, out_tokens, out_logprobs, done = state
        key, sub = jax.random.split(key)
        token = choose_tokens(logits, sub, sampling)
        # log p(token) = logit - logsumexp: no [B, V] log-softmax array per step.
        logprob = (jnp.take_along_axis(logits, token[:, None], 1)[:, 0]
                   - jax.nn.logsumexp(logits, axis=-1))
        token = jnp.where(done, pad_id, token)
        out_tokens = out_tokens.at[:, step].set(token)
        out_logprobs = out_logprobs.at[:, step].set(jnp.where(done, 0.0, logprob))
        live = ~done
        done = done | jnp.isin(token, eos)
        logits, cache = forward(token[:, None], live[:, None], cache, cache_window)
        return step + 1, cache, logits, key, out_tokens, out_logprobs, done

    state = (jnp.zeros((), jnp.int32), cache, logits, key,
             jnp.full((rows, max_new_tokens), pad_id, jnp.int32),
             jnp.zeros((rows, max_new_tokens), jnp.float32), jnp.zeros((rows,), bool))
    # Decode in a few chunks of steps, each a loop that attends to only the cache slots
    # written before its last step: a step's cost grows with the slots it reads.
    for end in decode_chunk_ends(max_new_tokens, decode_chunks):
        # Step s writes slot T + s and reads the slots before it (the prompt took 0..T-1).
        window = tokens.shape[1] + end - 1
        state = jax.lax.while_loop(functools.partial(cond, end=end),
                                   functools.partial(body, cache_window=window), state)
    _, final_cache, _, _, out_tokens, out_logprobs, _ = state
    # Length = up to and including the first EOS (pad may equal EOS, so count positions).
    is_eos = jnp.isin(out_tokens, eos)
    lengths = jnp.where(jnp.any(is_eos, 1), jnp.argmax(is_eos, 1) + 1, max_new_tokens)
    lengths = lengths.astype(jnp.int32)
    return SampleOutput(out_tokens, lengths, out_logprobs), final_cache


class Sampler:
    """Holds the compiled sampling function and the KV cache buffer it donates."""

    def __init__(self, graphdef, model_config, *, max_new_tokens: int, eos_ids, pad_id: int,
                 cache_dtype=None, decode_chunks: int = 4, decode_kernel: bool | None = None):
        """decode_chunks: decoding runs as this many loops, each attending to only the
        cache slots written before its last step (a step's cost grows with the slots it
        reads); each is one more copy of the decode step to compile.

        decode_kernel: run decode steps on the CPU decode kernel
        (`sjjax.kernels.cpu_matvec`; the weights are packed once per parameter set and
        kept while those parameters are alive). None: wherever it applies (a float32
        model on a single CPU device, at most DECODE_KERNEL_MAX_ROWS rows, the kernel
        built); True: require it; False: XLA's matmuls only."""
        self.graphdef = graphdef
        self.config = model_config
        self.max_new_tokens = int(max_new_tokens)
        self.eos_ids = tuple(int(e) for e in np.atleast_1d(eos_ids))
        self.pad_id = int(pad_id)
        self.cache_dtype = cache_dtype or model_config.compute_dtype
        if decode_chunks < 1:
            raise ValueError(f"decode_chunks={decode_chunks} must be >= 1")
        self.decode_chunks = int(decode_chunks)
        self.decode_kernel = decode_kernel
        self._cache: KVCache | None = None
        self._fn = jax.jit(_sample, static_argnums=(0,), donate_argnums=(3,),
                           static_argnames=("sampling", "num_samples", "max_new_tokens",
                                            "eos_ids", "pad_id", "use_lora",
                                            "decode_chunks"))
        self._pack = jax.jit(_pack_for_decoding, static_argnums=(0,))
        # (weak references to the parameter leaves, their packed weights): repacking
        # costs a pass over the weights, so calls with the same params share one packing.
        self._packed: tuple[list, dict] | None = None

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
        packed = (self._packed_weights(params, lora or {})
                  if self._decode_kernel_for(params, b * num_samples) else None)
        out, self._cache = self._fn(self.graphdef, params, lora or {}, cache, tokens,
                                    jnp.asarray(mask, bool), key, packed, sampling=sampling,
                                    num_samples=num_samples, max_new_tokens=self.max_new_tokens,
                                    eos_ids=self.eos_ids, pad_id=self.pad_id, use_lora=use_lora,
                                    decode_chunks=self.decode_chunks)
        return out

    def _packed_weights(self, params, lora) -> dict:
        """The params packed for the CPU decode kernel (LoRA adapters stay unpacked),
        reused while the same parameter arrays come back (an evaluation's or a generation
        phase's calls)."""
        leaves = jax.tree.leaves(params)
        if self._packed is not None:
            refs, packed = self._packed
            if len(refs) == len(leaves) and all(r() is x for r, x in zip(refs, leaves)):
                return packed
        self._packed = None  # drop the old packing before making the new one
        packed = self._pack(self.graphdef, params, lora)
        try:
            self._packed = ([weakref.ref(x) for x in leaves], packed)
        except TypeError:  # leaves that take no weak reference: pack on every call
            pass
        return packed

    def _decode_kernel_for(self, params, rows: int) -> bool:
        """Whether this call's decode steps run on the CPU decode kernel (see __init__)."""
        if self.decode_kernel is False:
            return False
        devices = set()
        for leaf in jax.tree.leaves(params):
            devices |= leaf.devices() if isinstance(leaf, jax.Array) else {jax.devices()[0]}
        reasons = [why for why, bad in (
            ("the model does not compute in float32",
             self.config.compute_dtype != jnp.float32),
            ("the parameters are not on a single CPU device",
             len(devices) != 1 or next(iter(devices)).platform != "cpu"),
            (f"{rows} rows > DECODE_KERNEL_MAX_ROWS={DECODE_KERNEL_MAX_ROWS}",
             rows > DECODE_KERNEL_MAX_ROWS),
        ) if bad]
        if not reasons and not cpu_matvec.available():  # builds it on first use
            reasons.append("the kernel could not be built (see the log)")
        if reasons and self.decode_kernel:
            raise ValueError(f"decode_kernel=True but {'; '.join(reasons)}")
        return not reasons

    def compiled_count(self) -> int:
        """How many shape/config buckets have been compiled (for recompilation tests)."""
        return self._fn._cache_size()


def _pack_for_decoding(graphdef, params, lora) -> dict:
    return merge_params(graphdef, params, lora).pack_for_decoding()


@functools.partial(jax.jit, static_argnums=(0,))
def _forward_logits(graphdef, params, lora, tokens, mask):
    return merge_params(graphdef, params, lora)(tokens, mask)[0]


def forward_logits(graphdef, params, tokens, mask, lora=None):
    """Full-sequence logits [B, T, V] (jitted); a convenience for tests and tools."""
    return _forward_logits(graphdef, params, lora or {}, jnp.asarray(tokens), jnp.asarray(mask))
