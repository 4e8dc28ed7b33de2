"""Evaluation building blocks shared by the evaluate, tournament and self-judge phases.

    responder = Responder(policy, config)           # batched sampling of chat replies
    texts, lengths = responder.reply(prompts, key, greedy=True)
    judge_eval = evaluate_judge(judge, params, judgments)   # accuracy on labelled pairs
    sweep = tournament_sweep(responder, judge, params, prompts, (1, 2, 4, 8, 16), key, oracle)
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import numpy as np

from sjjax.data.records import EvalItem, Judgment, Prompt, render_context, user_turn
from sjjax.data.templates import ChatEncoder
from sjjax.eval_metrics import (judge_accuracy, longer_wins_accuracy, mean_or_nan,
                                repetition_rate, win_rate)
from sjjax.judge import Judge
from sjjax.sampling import Sampler, SamplingParams, decode_response, left_pad
from sjjax.tournament import run_tournament

Oracle = Callable[[dict, str], float]


class Responder:
    """Chat replies of a policy for lists of prompts, in fixed-size batches (one
    compilation per prompt-length bucket)."""

    def __init__(self, policy, *, max_new_tokens: int, batch_size: int, prompt_bucket: int = 32,
                 lora=None, graphdef=None):
        self.policy = policy
        self.lora = lora if lora is not None else policy.lora
        self.encoder = ChatEncoder(policy.tokenizer)
        self.batch_size = batch_size
        self.prompt_bucket = prompt_bucket
        self.sampler = Sampler(graphdef or policy.graphdef, policy.model_config,
                               max_new_tokens=max_new_tokens, eos_ids=policy.eos_ids,
                               pad_id=policy.tokenizer.pad_token_id)

    def reply(self, prompts: Sequence[Prompt], key: jax.Array, params: SamplingParams,
              num_samples: int = 1, weights=None) -> tuple[list[list[str]], np.ndarray]:
        """-> (texts[i][j] = sample j for prompt i, token lengths [len(prompts), n])."""
        tok = self.policy.tokenizer
        weights = weights if weights is not None else self.policy.params
        ids = [self.encoder.encode_prompt(list(p.messages)) for p in prompts]
        texts, lengths = [], []
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start:start + self.batch_size]
            rows = chunk + [chunk[-1]] * (self.batch_size - len(chunk))  # fixed batch shape
            tokens, mask = left_pad(rows, tok.pad_token_id, self.prompt_bucket)
            out = self.sampler(weights, self.lora, tokens, mask,
                               jax.random.fold_in(key, start), params, num_samples=num_samples)
            gen, lens = np.asarray(out.tokens), np.asarray(out.lengths)
            for i in range(len(chunk)):
                row = []
                for j in range(num_samples):
                    r = i * num_samples + j
                    row.append(decode_response(tok, gen[r, :lens[r]], self.policy.eos_ids))
                texts.append(row)
                lengths.append(lens[i * num_samples:(i + 1) * num_samples])
        return texts, np.asarray(lengths)


@dataclasses.dataclass
class JudgeEval:
    accuracy: float                 # judge prefers the chosen response
    position_consistency: float
    longer_wins_accuracy: float     # the "longer response wins" baseline
    n: int
    by_group: dict                  # accuracy per family (synthetic) or source

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def evaluate_judge(judge: Judge, params, lora, judgments: Sequence[Judgment],
                   use_lora: bool = True, group: Callable[[Judgment], str] | None = None
                   ) -> JudgeEval:
    """Accuracy on labelled pairs: each pair judged with chosen shown as `a` (the
    score averages both orders, so the side does not matter)."""
    pairs = [(j.context, j.chosen, j.rejected) for j in judgments]
    result = judge(params, lora, pairs, use_lora=use_lora)
    by_group = {}
    if group is not None:
        names = [group(j) for j in judgments]
        for name in sorted(set(names)):
            sel = np.array([n == name for n in names])
            by_group[name] = judge_accuracy(result.a_wins[sel])
    return JudgeEval(judge_accuracy(result.a_wins), result.position_consistency,
                     longer_wins_accuracy([j.chosen for j in judgments],
                                          [j.rejected for j in judgments]),
                     len(judgments), by_group)


def synthetic_family(j) -> str:
    """'compare:1' from a synthetic record's source 'synthetic:seed:stream:family:level:i'."""
    parts = j.source.split(":")
    return f"{parts[3]}:{parts[4]}" if len(parts) > 4 and parts[0] == "synthetic" else "all"


def response_quality(prompts: Sequence[Prompt], texts: Sequence[str], lengths,
                     oracle: Oracle | None) -> dict:
    out = {"length_tokens": mean_or_nan(lengths),
           "repetition_4gram": mean_or_nan(repetition_rate(t) for t in texts)}
    if oracle is not None:
        out["oracle_accuracy"] = mean_or_nan(oracle(p.meta, t) for p, t in zip(prompts, texts))
    return out


def tournament_sweep(responder: Responder, judge: Judge, judge_params, judge_lora,
                     prompts: Sequence[Prompt], sizes: Sequence[int], key: jax.Array,
                     sampling: SamplingParams, oracle: Oracle | None = None,
                     policy_weights=None, judge_use_lora: bool = True):
    """Self-rejection by tournament for each N in `sizes`, on the same candidates: N
    samples per prompt drawn once (max N), the first N used for size N.

    -> (results {N: quality dict}, texts [prompt][candidate], brackets {N: result})."""
    n_max = max(sizes)
    texts, lengths = responder.reply(prompts, jax.random.fold_in(key, 0), sampling, n_max,
                                     weights=policy_weights)
    results, brackets = {}, {}
    for n in sizes:
        def judge_matches(matches):
            pairs = [(prompts[p].context, texts[p][a], texts[p][b]) for p, a, b in matches]
            return judge(judge_params, judge_lora, pairs, use_lora=judge_use_lora).a_wins

        bracket = brackets[n] = run_tournament(jax.random.fold_in(key, n), n, judge_matches,
                                               len(prompts))
        winners = [texts[p][w] for p, w in enumerate(bracket.winners)]
        win_lengths = [lengths[p][w] for p, w in enumerate(bracket.winners)]
        quality = response_quality(prompts, winners, win_lengths, oracle)
        quality["matches_per_prompt"] = float(bracket.matches_per_prompt(len(prompts)).mean())
        if oracle is not None:  # what an oracle picking any correct candidate would get
            quality["oracle_best_of_n"] = mean_or_nan(
                max(oracle(p.meta, t) for t in texts[i][:n]) for i, p in enumerate(prompts))
        results[n] = quality
    return results, texts, brackets


def win_rate_against_references(responder: Responder, judge: Judge, judge_params, judge_lora,
                                items: Sequence[EvalItem], key: jax.Array,
                                sampling: SamplingParams, judge_use_lora: bool = True) -> dict:
    """The model's replies vs reference outputs, judged in both orders by `judge`."""
    prompts = [Prompt((user_turn(it.instruction),), render_context([user_turn(it.instruction)]))
               for it in items]
    texts, lengths = responder.reply(prompts, key, sampling)
    pairs = [(p.context, t[0], it.reference) for p, t, it in zip(prompts, texts, items)]
    judged = judge(judge_params, judge_lora, pairs, use_lora=judge_use_lora)
    out = win_rate(judged.scores)
    out["position_consistency"] = judged.position_consistency
    out["length_tokens"] = mean_or_nan(lengths[:, 0])
    out["reference_length_words"] = mean_or_nan(len(it.reference.split()) for it in items)
    out["length_words"] = mean_or_nan(len(t[0].split()) for t in texts)
    return out
