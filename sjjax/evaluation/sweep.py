"""Self-rejection by tournament swept over the number of candidates N, on the same
candidates: the quality of each N's winners."""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from sjjax.data.records import Prompt
from sjjax.evaluation.metrics import mean_or_nan
from sjjax.evaluation.responses import Oracle, prompt_stratum, respond, response_quality
from sjjax.generation import Responder
from sjjax.judge import Judge
from sjjax.sampling import SamplingParams
from sjjax.tournament import run_tournament


def stratified_prompts(prompts: Sequence[Prompt], n: int, seed: int) -> list[Prompt]:
    """n prompts drawn evenly over the strata (family and level) in turn, each stratum's
    prompts in a seeded random order, so every stratum is present whenever n is at least
    their number (never `prompts[:n]` of a list sorted by family)."""
    rng = np.random.default_rng([seed, 0x7011])
    groups: dict[str, list] = {}
    for p in prompts:
        groups.setdefault(prompt_stratum(p), []).append(p)
    queues = [[g[i] for i in rng.permutation(len(g))] for _, g in sorted(groups.items())]
    queues = [queues[i] for i in rng.permutation(len(queues))]
    out, depth = [], 0
    while len(out) < min(n, len(prompts)):
        for q in queues:
            if depth < len(q) and len(out) < n:
                out.append(q[depth])
        depth += 1
    return out


def tournament_sweep(responder: Responder, judge: Judge, prompts: Sequence[Prompt],
                     sizes: Sequence[int], key: jax.Array, sampling: SamplingParams,
                     oracle: Oracle | None = None, *, policy_params, policy_lora,
                     judge_params, judge_lora, judge_use_lora: bool = True):
    """Self-rejection by tournament for each N in `sizes`, on the same candidates: N
    samples per prompt drawn once (max N, with fold_in(key, 0)), the first N used for
    size N (bracket drawn with fold_in(key, N)).

    -> (results {N: quality dict}, texts [prompt][candidate], brackets {N: result})."""
    n_max = max(sizes)
    out = respond(responder, policy_params, policy_lora, prompts, jax.random.fold_in(key, 0),
                  sampling, n_max)
    texts, lengths = out.texts, out.lengths
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
