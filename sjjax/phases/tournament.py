"""Tournament self-rejection at inference (`configs/tournament.py`).

For each prompt, sample N responses from the model and keep the winner of a
single-elimination bracket judged by the model itself (N - 1 matches, every match
of a round judged in one batch). Sweeps N over config.tournament.num_candidates on
the same candidates and writes run_dir/tournament.json and run_dir/responses.jsonl
(the winners at the largest N, with every candidate).
"""

from __future__ import annotations

import json
import os

import jax

from sjjax.config import ConfigError, save_resolved
from sjjax.data.sources import load_oracle, load_prompts
from sjjax.data.templates import JudgePromptBuilder
from sjjax.evaluation import Responder, tournament_sweep
from sjjax.judge import Judge
from sjjax.phases.common import load_policy, sampling_params


def validate(config) -> None:
    t = config.tournament
    if not t.num_candidates or min(t.num_candidates) < 1:
        raise ConfigError("config.tournament.num_candidates: a list of N >= 1")
    if t.split not in ("train", "heldout", "all"):
        raise ConfigError("config.tournament.split: train, heldout or all")


def run(config):
    t = config.tournament
    policy = load_policy(config)
    os.makedirs(config.run_dir, exist_ok=True)
    save_resolved(config, config.run_dir)
    prompts = load_prompts(config, split=t.split)[:t.num_prompts]
    oracle = load_oracle(config)
    responder = Responder(policy, max_new_tokens=config.sampling.max_new_tokens,
                          batch_size=config.sampling.batch_size,
                          prompt_bucket=config.sampling.prompt_bucket)
    judge = Judge(policy.graphdef, JudgePromptBuilder.from_config(policy.tokenizer, config.judge),
                  batch_size=config.judge.batch_size, max_length=config.judge.max_length,
                  pad_id=policy.tokenizer.pad_token_id)
    key = jax.random.key(config.seed)
    sampling = sampling_params(config.sampling)
    sizes = tuple(sorted(set(t.num_candidates)))
    sweep, texts, brackets = tournament_sweep(responder, judge, policy.params, policy.lora,
                                              prompts, sizes, key, sampling, oracle)
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
        print(f"[tournament] N={size}: " + ", ".join(f"{k}={v:.3f}" for k, v in q.items()),
              flush=True)
    return sweep
