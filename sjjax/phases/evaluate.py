"""Evaluation (`configs/evaluate.py`): did Self-Judge help this model?

For the model in config.model.source (a run directory or pretrained weights):
- oracle accuracy of greedy replies on held-out synthetic prompts;
- judge accuracy on held-out labelled pairs (synthetic; a held-out part of HH-RLHF),
  position consistency, and the "longer response wins" baseline;
- win rate of its replies against reference outputs (AlpacaEval), judged in both
  orders by config.evaluate.judge_source (default: the model itself);
- mean response length and 4-gram repetition;
- tournament self-rejection for N in config.evaluate.tournament_sizes.

Writes run_dir/eval.json; `sjjax.report` turns one or more of them into a report.
"""

from __future__ import annotations

import json
import logging
import os

import jax
import ml_collections
import numpy as np

from sjjax.config import ConfigError, save_resolved
from sjjax.data.readers import read_alpaca_eval
from sjjax.data.sources import load_oracle, read_sources
from sjjax.data.templates import JudgePromptBuilder
from sjjax.evaluation import (Responder, evaluate_judge, response_quality, synthetic_family,
                              tournament_sweep, win_rate_against_references)
from sjjax.judge import Judge
from sjjax.phases.common import load_policy, sampling_params
from sjjax.sampling import SamplingParams

log = logging.getLogger("sjjax")


def default_evaluate_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        judge_source="",            # "" = the evaluated model judges (self-judgment)
        num_prompts=128,            # held-out prompts for oracle accuracy / tournaments
        num_pairs=256,              # held-out labelled pairs for judge accuracy
        tournament_sizes=(1, 2, 4, 8, 16),
        tournament_prompts=64,
        win_rate_references="",     # AlpacaEval JSON (instruction, output) or ""
        win_rate_items=32,
        label="",                   # name of this model in reports (default: its run dir)
    ))


def validate(config) -> None:
    if "evaluate" not in config:
        raise ConfigError("config.evaluate: missing (see sjjax.phases.evaluate)")
    ev = config.evaluate
    if any(n < 1 for n in ev.tournament_sizes):
        raise ConfigError("config.evaluate.tournament_sizes: every N must be >= 1")
    if ev.win_rate_references and not os.path.exists(ev.win_rate_references):
        raise ConfigError(f"config.evaluate.win_rate_references: {ev.win_rate_references!r} "
                          f"not found")


def _sample(items, n: int, seed: int):
    """A seeded subset of n items (sources list items grouped, e.g. by task family)."""
    order = np.random.default_rng(seed).permutation(len(items))[:n]
    return [items[i] for i in sorted(order)]


def _heldout(config):
    """Held-out prompts and labelled pairs from the config's sources."""
    records = read_sources(config.data.sources, config.data.on_bad_record, split="heldout")
    ev = config.evaluate
    return (_sample(records.prompts, ev.num_prompts, config.seed),
            _sample(records.judgments, ev.num_pairs, config.seed + 1))


def run(config):
    ev = config.evaluate
    policy = load_policy(config)
    os.makedirs(config.run_dir, exist_ok=True)
    save_resolved(config, config.run_dir)
    key = jax.random.key(config.seed)
    prompts, judgments = _heldout(config)
    oracle = load_oracle(config)
    responder = Responder(policy, max_new_tokens=config.sampling.max_new_tokens,
                          batch_size=config.sampling.batch_size,
                          prompt_bucket=config.sampling.prompt_bucket)
    judge_policy = policy
    if ev.judge_source:
        judge_config = ml_collections.ConfigDict(config.to_dict())
        judge_config.model.source = ev.judge_source
        judge_policy = load_policy(judge_config)
    builder = JudgePromptBuilder.from_config(judge_policy.tokenizer, config.judge)
    judge = Judge(judge_policy.graphdef, builder, batch_size=config.judge.batch_size,
                  max_length=config.judge.max_length, pad_id=judge_policy.tokenizer.pad_token_id)
    results = {"model": config.model.source, "label": ev.label or config.model.source,
               "judge": ev.judge_source or "self"}

    if prompts:
        texts, lengths = responder.reply(prompts, key, SamplingParams(greedy=True))
        results["greedy"] = response_quality(prompts, [t[0] for t in texts], lengths[:, 0],
                                             oracle)
        log.info("greedy: %s", results["greedy"])
    if judgments:
        results["judge"] = evaluate_judge(judge, judge_policy.params, judge_policy.lora,
                                          judgments, group=synthetic_family).as_dict()
        log.info("judge accuracy %.3f (consistency %.3f)", results["judge"]["accuracy"],
                 results["judge"]["position_consistency"])
    if ev.tournament_sizes and prompts:
        sampling = sampling_params(config.sampling)
        sweep, _, _ = tournament_sweep(responder, judge, judge_policy.params, judge_policy.lora,
                                 prompts[:ev.tournament_prompts], tuple(ev.tournament_sizes),
                                 jax.random.fold_in(key, 1), sampling, oracle)
        results["tournament"] = {str(n): v for n, v in sweep.items()}
    if ev.win_rate_references:
        items = read_alpaca_eval(ev.win_rate_references).eval_items[:ev.win_rate_items]
        results["win_rate"] = win_rate_against_references(
            responder, judge, judge_policy.params, judge_policy.lora, items,
            jax.random.fold_in(key, 2), SamplingParams(greedy=True))
    path = os.path.join(config.run_dir, "eval.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"[evaluate] {results['label']}: " + json.dumps(
        {k: results[k] for k in ("greedy", "judge") if k in results}, default=str)[:600],
        flush=True)
    return results
