"""The policy's responses to evaluation prompts and their quality: oracle accuracy,
length and repetition of greedy replies; win rate against reference outputs."""

from __future__ import annotations

from typing import Callable, Sequence

import jax

from sjjax.data.records import EvalItem, Prompt, render_context, user_turn
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


def response_quality(prompts: Sequence[Prompt], texts: Sequence[str], lengths,
                     oracle: Oracle | None) -> dict:
    out = {"length_tokens": mean_or_nan(lengths),
           "repetition_4gram": mean_or_nan(repetition_rate(t) for t in texts)}
    if oracle is not None:
        out["oracle_accuracy"] = mean_or_nan(oracle(p.meta, t) for p, t in zip(prompts, texts))
    return out


def greedy_quality(responder: Responder, prompts: Sequence[Prompt], key: jax.Array,
                   oracle: Oracle | None, *, policy_params, policy_lora) -> dict:
    """response_quality of the policy's greedy replies."""
    out = respond(responder, policy_params, policy_lora, prompts, key,
                  SamplingParams(greedy=True))
    return response_quality(prompts, [t[0] for t in out.texts], out.lengths[:, 0], oracle)


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
