"""Self-judgment: pairwise scores read off the judge token probabilities.

For a pair (a, b) under principle p, two prompts are built (a shown as A, and b
shown as A), and the next-token distribution after the assistant prefix is read at
the two judge tokens:

    score_p(a) = [P(A | a first, b second) + P(B | b first, a second)] / 2,
    score_p(b) = [P(B | a first, b second) + P(A | b first, a second)] / 2.

The rules (`JudgeRules`, config.judge.score / principle_vote / tie_break):
- score "pair_softmax" (default): P renormalised over the two judge tokens in each
  order (a 2-way softmax), so score_p(b) = 1 - score_p(a); "full_softmax" (the
  official code, oddqueue/self-judge `utils.py:149-158`): P is the full-vocabulary
  softmax, so an order that puts more mass on A/B weighs more.
- principle_vote "abstain" (default): a majority of per-principle wins, a principle
  whose two scores are equal abstains; "share" (official `utils.py:164-171`): a wins
  when the share of principles it wins (score_p(a) > score_p(b)) is above 1/2, b when
  below; a tie ("abstain": equal wins; "share": a share of exactly 1/2) is broken by
  the mean score over principles.
- tie_break "a" (default): equal mean scores go to a; "b" (official
  `utils.py:173-178`): a needs the strictly higher mean.
Position consistency: both orders prefer the same response.

A judge whose template has a `check` (sjjax.data.templates) first writes, greedily, its
check of the two responses in each order ("A: 83 is not in the question.\nB: ..."),
and its decision is read after the check and assistant_prefix (`Judge.from_config`
builds the generator; config.judge.check_tokens bounds the check). Otherwise nothing
is generated. One jitted forward judges a whole batch and does only the work the
answer needs:
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
from sjjax.errors import ConfigError
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
    order_probs: np.ndarray      # [N, P, 2] P(A) in order 0 (a first), P(A) in order 1 (b
                                 # first), renormalised over the two judge tokens
    principle_scores: np.ndarray  # [N, P] score_p(a)
    scores: np.ndarray           # [N] mean over principles of score_p(a)
    a_wins: np.ndarray           # [N] bool, the vote
    consistent: np.ndarray       # [N, P] bool, both orders prefer the same response
    ties: int                    # pairs decided by the tie-break
    trimmed: int                 # prompts whose context or responses were trimmed
    # [N, P, 2, 2] full-vocabulary P(A), P(B) per order (None: not computed)
    token_probs: np.ndarray | None = None
    principle_scores_b: np.ndarray | None = None  # [N, P] score_p(b)
    checks: list | None = None   # [N][P][2] the written checks per order (check templates)

    @property
    def position_consistency(self) -> float:
        return float(self.consistent.mean()) if self.consistent.size else float("nan")


SCORES = ("pair_softmax", "full_softmax")
PRINCIPLE_VOTES = ("abstain", "share")
TIE_BREAKS = ("a", "b")


@dataclasses.dataclass(frozen=True)
class JudgeRules:
    """How order probabilities become a verdict (module docstring); the defaults are
    sjjax's, `OFFICIAL` the official code's."""
    score: str = "pair_softmax"
    principle_vote: str = "abstain"
    tie_break: str = "a"

    def __post_init__(self):
        for name, allowed in (("score", SCORES), ("principle_vote", PRINCIPLE_VOTES),
                              ("tie_break", TIE_BREAKS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"config.judge.{name}: {getattr(self, name)!r} is not one "
                                  f"of {allowed}")

    @classmethod
    def from_config(cls, judge_config) -> "JudgeRules":
        """From config.judge (keys absent in older configs take the defaults)."""
        get = judge_config.get
        return cls(get("score", cls.score), get("principle_vote", cls.principle_vote),
                   get("tie_break", cls.tie_break))


OFFICIAL = JudgeRules("full_softmax", "share", "b")


def principle_scores(order_probs: np.ndarray, token_probs: np.ndarray | None = None,
                     score: str = "pair_softmax") -> tuple[np.ndarray, np.ndarray]:
    """-> (score_p(a), score_p(b)) [N, P] from [N, P, 2] P(A) per order (pair_softmax)
    or [N, P, 2, 2] full-vocabulary P(A), P(B) per order (full_softmax)."""
    if score == "full_softmax":
        if token_probs is None:
            raise ValueError("score='full_softmax' needs the full-vocabulary token_probs")
        t = np.asarray(token_probs, np.float64)
        return (t[..., 0, 0] + t[..., 1, 1]) / 2.0, (t[..., 0, 1] + t[..., 1, 0]) / 2.0
    p = np.asarray(order_probs, np.float64)
    a = (p[..., 0] + (1.0 - p[..., 1])) / 2.0
    return a, 1.0 - a


def vote(score_a: np.ndarray, score_b: np.ndarray, rules: JudgeRules = JudgeRules()
         ) -> tuple[np.ndarray, np.ndarray]:
    """[N, P] scores of a and b -> (a_wins [N], decided by the tie-break [N])."""
    mean_a, mean_b = score_a.mean(axis=1), score_b.mean(axis=1)
    wins_a = (score_a > score_b).sum(axis=1)
    if rules.principle_vote == "share":
        share = wins_a / score_a.shape[1]
        tie, decided = share == 0.5, share > 0.5
    else:
        wins_b = (score_a < score_b).sum(axis=1)
        tie, decided = wins_a == wins_b, wins_a > wins_b
    tie_to_a = (mean_a > mean_b) | ((mean_a == mean_b) & (rules.tie_break == "a"))
    return np.where(tie, tie_to_a, decided), tie


def aggregate(order_probs: np.ndarray, token_probs: np.ndarray | None = None,
              rules: JudgeRules = JudgeRules()) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                         np.ndarray, int]:
    """[N, P, 2] P(A) per order (and, for score="full_softmax", [N, P, 2, 2] token_probs)
    -> (principle scores of a [N,P], mean [N], a_wins [N], consistent [N,P], ties)."""
    p = np.asarray(order_probs, np.float64)
    score_a, score_b = principle_scores(p, token_probs, rules.score)
    a_wins, tie = vote(score_a, score_b, rules)
    consistent = (p[..., 0] > 0.5) == (p[..., 1] < 0.5)
    return score_a, score_a.mean(axis=1), a_wins, consistent, int(tie.sum())


def _judge_probs(graphdef, params, lora, prefix_tokens, prefix_mask, suffix_tokens,
                 suffix_mask, token_ids, *, use_lora: bool):
    """-> [R, 2, 3] per order: P(first judge token) under the 2-way softmax, then both
    judge tokens' full-vocabulary softmax probabilities; float32."""
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
    logits = logits.astype(jnp.float32)
    pair_logits = logits[:, jnp.asarray(token_ids)]  # [2R, 2]
    full = jnp.exp(pair_logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True))
    pair = jax.nn.softmax(pair_logits, axis=-1)[:, :1]
    return jnp.concatenate([pair, full], axis=-1).reshape(r, 2, 3)


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
    per batch (after writing each order's check, for a check template)."""

    def __init__(self, graphdef, builder: JudgePromptBuilder, *, batch_size: int = 8,
                 max_length: int | None = None, length_bucket: int = 16, pad_id: int = 0,
                 rules: JudgeRules = JudgeRules(), checker=None):
        """checker: a `sjjax.generation.Responder` on the same graph, with batch_size=None
        and max_new_tokens = the longest check; needed when the templates have a check."""
        self.graphdef = graphdef
        self.rules = rules
        self.builder = builder
        self.batch_size = batch_size
        self.max_length = max_length
        self.length_bucket = length_bucket
        self.pad_id = pad_id
        self._fn = jax.jit(_judge_probs, static_argnums=(0,), static_argnames=("use_lora",))
        checks = {builder.checks(p) for p in builder.principles}
        if len(checks) > 1:
            raise ConfigError("config.judge.templates: either every principle's template has "
                              "a check or none has")
        self.checks = checks == {True}
        if self.checks and checker is None:
            raise ValueError("a judge template with a check needs a checker (Judge.from_config)")
        self.checker = checker

    @classmethod
    def from_config(cls, graphdef, policy, judge_config) -> "Judge":
        """The judge of config.judge on `policy`'s tokenizer, on the graph `graphdef` (the
        policy's, or its graph with LoRA adapters)."""
        builder = JudgePromptBuilder.from_config(policy.tokenizer, judge_config, bos=policy.bos)
        checker = None
        if any(builder.checks(p) for p in builder.principles):
            from sjjax.generation import Responder
            checker = Responder(graphdef, policy.model_config, policy.tokenizer,
                                max_new_tokens=judge_config.get("check_tokens", 64),
                                eos_ids=policy.eos_ids, batch_size=None, prompt_bucket=16,
                                bos=policy.bos)
        return cls(graphdef, builder, batch_size=judge_config.batch_size,
                   max_length=judge_config.max_length, pad_id=policy.tokenizer.pad_token_id,
                   rules=JudgeRules.from_config(judge_config), checker=checker)

    @property
    def principles(self) -> list[str]:
        return self.builder.principles

    def _prompts(self, pairs: Sequence[tuple[str, str, str]]) -> list:
        """[(prompt a first, prompt b first)] per (pair, principle); a check template's
        prompts end where the check is written, with room left for it."""
        budget = self.max_length
        if budget is not None and self.checks:
            budget -= self.checker.sampler.max_new_tokens + max(
                len(self.builder.check_ids(p, "")) for p in self.principles)
        prompts = []
        for context, a, b in pairs:
            for principle in self.principles:
                ab = self.builder.prompt(principle, context, a, b, budget)
                ba = self.builder.prompt(principle, context, b, a, budget)
                # Trimming is symmetric in (a, b), so both orders share the prefix.
                assert ab.prefix == ba.prefix, "judge prefixes of the two orders differ"
                prompts.append((ab, ba))
        return prompts

    def write_checks(self, params, lora, pairs: Sequence[tuple[str, str, str]],
                     rows: int | None = None, use_lora: bool = True,
                     prompts: list | None = None) -> list:
        """Each order's check, written greedily: [(ids a first, ids b first)] per (pair,
        principle), the ids before assistant_prefix (what the judge wrote up to its
        decision; all of it, EOS dropped, if it never wrote assistant_prefix). `rows` pads
        the prompt count to 2 * rows (one compiled shape per prompt-length bucket);
        `prompts`: `_prompts(pairs)` when the caller has built them already."""
        from sjjax.sampling import SamplingParams
        prompts = [list(x.ids) for pair in (prompts or self._prompts(pairs)) for x in pair]
        if not prompts:
            return []
        padded = prompts + [prompts[-1]] * max(0, 2 * (rows or 0) - len(prompts))
        out = self.checker.sample(params, lora, padded, jax.random.key(0),
                                  SamplingParams(greedy=True), use_lora=use_lora)
        eos = set(self.checker.eos_ids)
        written = []
        for i, gen in enumerate(out.tokens[:len(prompts)]):
            ids = [int(t) for t in gen[0] if int(t) not in eos]
            stop = self.builder.check_ids(self.principles[(i // 2) % len(self.principles)], "")
            written.append(ids[:_find(ids, stop)])
        return [(written[i], written[i + 1]) for i in range(0, len(written), 2)]

    def build_batch(self, pairs: Sequence[tuple[str, str, str]], rows: int | None = None,
                    checks: Sequence[tuple[list, list]] | None = None,
                    prompts: list | None = None):
        """pairs of (context, a, b) -> (JudgeBatch, trimmed count); `rows` pads the
        row count (so every call has the same shape); `checks` (`write_checks`) are
        appended to a check template's prompts, each followed by assistant_prefix;
        `prompts`: `_prompts(pairs)` when the caller has built them already."""
        prompts = prompts or self._prompts(pairs)
        if checks is not None:
            after = [self.builder.check_ids(p, "") for p in self.principles]
            prompts = [tuple(dataclasses.replace(x, suffix=x.suffix + c + after[i % len(after)])
                             for x, c in zip(pair, check))
                       for i, (pair, check) in enumerate(zip(prompts, checks))]
        trimmed = sum(bool(x.context_trimmed or x.responses_trimmed)
                      for pair in prompts for x in pair)
        n_rows = max(rows or 0, len(prompts))
        prefixes = [ab.prefix for ab, _ in prompts]
        # (the orders' suffixes differ in length only when each carries its own check)
        suffixes = [max(len(ab.suffix), len(ba.suffix)) for ab, ba in prompts]
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

    def probs(self, params, lora, batch: JudgeBatch, use_lora: bool = True) -> np.ndarray:
        """[R, 2, 3] per order: 2-way P(A), full-vocabulary P(A), P(B) (`_judge_probs`)."""
        out = self._fn(self.graphdef, params, lora or {}, batch.prefix_tokens, batch.prefix_mask,
                       batch.suffix_tokens, batch.suffix_mask, self.builder.token_ids,
                       use_lora=use_lora)
        return np.asarray(out)

    def order_probs(self, params, lora, batch: JudgeBatch, use_lora: bool = True) -> np.ndarray:
        """[R, 2] P(A) per order (2-way softmax) for a built batch."""
        return self.probs(params, lora, batch, use_lora)[..., 0]

    def __call__(self, params, lora, pairs: Sequence[tuple[str, str, str]],
                 use_lora: bool = True) -> Judgement:
        """Judges pairs of (context, response_a, response_b)."""
        p = len(self.principles)
        per_call = max(1, self.batch_size)
        probs, trimmed, written = [], 0, []
        for start in range(0, len(pairs), per_call):
            chunk = pairs[start:start + per_call]
            prompts = self._prompts(chunk)  # tokenized once, for the checks and the verdict
            checks = (self.write_checks(params, lora, chunk, per_call * p, use_lora, prompts)
                      if self.checks else None)
            written += checks or []
            batch, t = self.build_batch(chunk, rows=per_call * p, checks=checks,
                                        prompts=prompts)
            trimmed += t
            probs.append(self.probs(params, lora, batch, use_lora)[:len(chunk) * p])
        out = (np.concatenate(probs) if probs else np.zeros((0, 2, 3))).reshape(-1, p, 2, 3)
        order_probs, token_probs = out[..., 0], out[..., 1:]
        score_a, mean, a_wins, consistent, ties = aggregate(order_probs, token_probs,
                                                            self.rules)
        score_b = principle_scores(order_probs, token_probs, self.rules.score)[1]
        texts = None
        if self.checks:
            decode = self.builder.tokenizer.decode
            texts = [[[decode(ids) for ids in written[i * p + j]] for j in range(p)]
                     for i in range(len(pairs))]
        return Judgement(order_probs, score_a, mean, a_wins, consistent, ties, trimmed,
                         token_probs, score_b, texts)

    def compiled_count(self) -> int:
        return self._fn._cache_size()


def _find(ids: list[int], sub: list[int]) -> int:
    """Index of the first occurrence of `sub` in `ids` (len(ids) if none or sub empty)."""
    for i in range(len(ids) - len(sub) + 1) if sub else ():
        if ids[i:i + len(sub)] == sub:
            return i
    return len(ids)


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
