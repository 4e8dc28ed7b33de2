"""Tournament self-rejection at inference (`configs/tournament.py`).

For each prompt, sample N responses from the model and keep the winner of a
single-elimination bracket judged by the model itself (N - 1 matches, every match
of a round judged in one batch). Sweeps N over config.tournament.num_candidates on
the same candidates (prompts drawn evenly over task families and levels) and writes run_dir/tournament.json and run_dir/responses.jsonl
(the winners at the largest N, with every candidate).
"""

from __future__ import annotations

import json
import os

import jax

from sjjax.config import ConfigError, save_resolved
from sjjax.data.sources import load_oracle, load_prompts
from sjjax.evaluation import stratified_prompts, tournament_sweep
from sjjax.generation import Responder
from sjjax.judge import Judge
from sjjax.phases.common import load_policy, sampling_params


def validate(config) -> None:
    t = config.tournament
    if not t.num_candidates or min(t.num_candidates) < 1:
        raise ConfigError("config.tournament.num_candidates: a list of N >= 1")
    if t.split not in ("train", "heldout", "all"):
        raise ConfigError("config.tournament.split: train, heldout or all")


def select_prompts(config) -> list:
    """config.tournament.num_prompts prompts of the split, drawn evenly over the task
    families and levels (seeded by config.seed)."""
    t = config.tournament
    return stratified_prompts(load_prompts(config, split=t.split), t.num_prompts, config.seed)


def run(config):
    t = config.tournament
    policy = load_policy(config)
    os.makedirs(config.run_dir, exist_ok=True)
    save_resolved(config, config.run_dir)
    prompts = select_prompts(config)
    oracle = load_oracle(config)
    responder = Responder.from_config(policy, config.sampling)
    judge = Judge.from_config(policy.graphdef, policy, config.judge)
    key = jax.random.key(config.seed)
    sampling = sampling_params(config.sampling)
    sizes = tuple(sorted(set(t.num_candidates)))
    sweep, texts, brackets = tournament_sweep(
        responder, judge, prompts, sizes, key, sampling, oracle,
        policy_params=policy.params, policy_lora=policy.lora,
        judge_params=policy.params, judge_lora=policy.lora)
    with open(os.path.join(config.run_dir, "tournament.json"), "w") as f:
        json.dump({str(n): v for n, v in sweep.items()}, f, indent=2)

    # The winners at the largest N, with every candidate, for inspection.
    bracket = brackets[sizes[-1]]
    with open(os.path.join(config.run_dir, "responses.jsonl"), "w") as f:
        for i, p in enumerate(prompts):
            row = {"messages": list(p.messages), "winner": texts[i][bracket.winners[i]],
                   "candidates": texts[i], "source": p.source}
            if oracle is not None:
                row["oracle"] = [oracle(p.meta, x) for x in texts[i]]
            f.write(json.dumps(row) + "\n")
    for size, q in sweep.items():
        scalars = {k: v for k, v in q.items() if isinstance(v, (int, float))}  # not by stratum
        print(f"[tournament] N={size}: " + ", ".join(f"{k}={v:.3f}" for k, v in scalars.items()),
              flush=True)
    return sweep
