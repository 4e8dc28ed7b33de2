"""The policy's responses to evaluation prompts and their quality: oracle accuracy,
length and repetition of greedy replies; win rate against reference outputs."""

from __future__ import annotations

from typing import Callable, Sequence

import jax

from sjjax.data.records import EvalItem, Prompt, render_context, user_turn
from sjjax.data.synthetic import pairs_from_samples
from sjjax.evaluation.metrics import mean_or_nan, repetition_rate, win_rate
from sjjax.generation import Responder, Responses
from sjjax.judge import Judge
from sjjax.sampling import SamplingParams

Oracle = Callable[[dict, str], float]


def respond(responder: Responder, params, lora, prompts: Sequence[Prompt], key: jax.Array,
            sampling: SamplingParams, num_samples: int = 1) -> Responses:
    """num_samples replies to each prompt's conversation."""
    return responder.reply(params, lora, [p.messages for p in prompts], key, sampling,
                           num_samples)


def prompt_stratum(p: Prompt) -> str:
    """'family:level' of a synthetic prompt (from its meta), else 'all'."""
    meta = p.meta or {}
    return f"{meta['family']}:{meta.get('level', '')}" if "family" in meta else "all"


def response_quality(prompts: Sequence[Prompt], texts: Sequence[str], lengths,
                     oracle: Oracle | None) -> dict:
    """Length and repetition of the replies; with an oracle, its accuracy overall and per
    stratum (`oracle_accuracy_by_stratum`: 'family:level' -> accuracy, synthetic prompts).
    `prompts[i]` is the prompt of `texts[i]` (repeat a prompt for several replies)."""
    out = {"length_tokens": mean_or_nan(lengths),
           "repetition_4gram": mean_or_nan(repetition_rate(t) for t in texts)}
    if oracle is not None:
        scores = [oracle(p.meta, t) for p, t in zip(prompts, texts)]
        out["oracle_accuracy"] = mean_or_nan(scores)
        strata: dict[str, list] = {}
        for p, score in zip(prompts, scores):
            strata.setdefault(prompt_stratum(p), []).append(score)
        if len(strata) > 1:
            out["oracle_accuracy_by_stratum"] = {k: mean_or_nan(v)
                                                 for k, v in sorted(strata.items())}
    return out


def greedy_quality(responder: Responder, prompts: Sequence[Prompt], key: jax.Array,
                   oracle: Oracle | None, *, policy_params, policy_lora) -> dict:
    """response_quality of the policy's greedy replies."""
    out = respond(responder, policy_params, policy_lora, prompts, key,
                  SamplingParams(greedy=True))
    return response_quality(prompts, [t[0] for t in out.texts], out.lengths[:, 0], oracle)


def sampled_quality(responder: Responder, prompts: Sequence[Prompt], key: jax.Array,
                    oracle: Oracle | None, sampling: SamplingParams, num_samples: int, *,
                    policy_params, policy_lora, replies: list | None = None) -> dict:
    """response_quality of `num_samples` sampled replies per prompt (the distribution
    self-training draws from and sharpens; greedy decoding can hide a change in it).
    `replies`, when given a list, receives the replies ([P][num_samples] texts) for
    callers that judge them too (`own_pairs`)."""
    out = respond(responder, policy_params, policy_lora, prompts, key, sampling, num_samples)
    if replies is not None:
        replies.extend(out.texts)
    texts = [t for ts in out.texts for t in ts]
    repeated = [p for p in prompts for _ in range(num_samples)]
    result = response_quality(repeated, texts, out.lengths.reshape(-1), oracle)
    result["samples_per_prompt"] = num_samples
    return result


def own_pairs(prompts: Sequence[Prompt], replies: Sequence[Sequence[str]],
              principle: str = "helpfulness", rationales: bool = False,
              restate: bool | str = False):
    """The policy's own pairs, as the self-judge phase forms them: replies 0 and 1, 2 and
    3, ... of each prompt; labelled by the synthetic oracle -> (the informative pairs as
    Judgments, chosen = the right reply; SampleCounts of all pairs). These, not labelled
    pairs, are what the judge must get right for self-training to help. rationales:
    each pair carries both replies' true checks (for a check-first judge's score)."""
    paired, a, b = [], [], []
    for prompt, texts in zip(prompts, replies):
        for i in range(0, len(texts) - 1, 2):
            paired.append(prompt)
            a.append(texts[i])
            b.append(texts[i + 1])
    return pairs_from_samples(paired, a, b, principle, rationales, restate)


def win_rate_against_references(responder: Responder, judge: Judge, items: Sequence[EvalItem],
                                key: jax.Array, sampling: SamplingParams, *, policy_params,
                                policy_lora, judge_params, judge_lora,
                                judge_use_lora: bool = True) -> dict:
    """The model's replies vs reference outputs, judged in both orders by `judge`."""
    prompts = [Prompt((user_turn(it.instruction),), render_context([user_turn(it.instruction)]))
               for it in items]
    out = respond(responder, policy_params, policy_lora, prompts, key, sampling)
    texts, lengths = out.texts, out.lengths
    pairs = [(p.context, t[0], it.reference) for p, t, it in zip(prompts, texts, items)]
    judged = judge(judge_params, judge_lora, pairs, use_lora=judge_use_lora)
    result = win_rate(judged.scores)
    result["position_consistency"] = judged.position_consistency
    result["length_tokens"] = mean_or_nan(lengths[:, 0])
    result["reference_length_words"] = mean_or_nan(len(it.reference.split()) for it in items)
    result["length_words"] = mean_or_nan(len(t[0].split()) for t in texts)
    return result
