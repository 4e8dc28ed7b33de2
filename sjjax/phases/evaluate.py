"""Evaluation (`configs/evaluate.py`): did Self-Judge help this model?

For the model in config.model.source (a run directory or pretrained weights):
- oracle accuracy of greedy replies on held-out synthetic prompts, and of
  `evaluate.samples_per_prompt` sampled replies each (the distribution self-training
  sharpens), overall and per family and level;
- judge accuracy on held-out labelled pairs (synthetic; a held-out part of HH-RLHF),
  position consistency, exact ties, and beside it the question-blind baselines on the
  same pairs (`sjjax.evaluation.shortcuts`; their best is the bar). On the synthetic
  suite the old labelled pairs are shortcut-solvable (eval key "judge", marked so);
  "judge_shortcut_proof" is the same held-out questions with wrong answers that defeat
  every question-blind rule (`synthetic.shortcut_proof_pairs`); "judge_own_pairs" is the
  informative pairs of the model's own sampled replies (one right, one wrong, paired as
  the self-judge phase pairs them), the pairs self-training depends on;
- win rate of its replies against reference outputs (AlpacaEval), judged in both
  orders by config.evaluate.judge_source (default: the model itself);
- mean response length and 4-gram repetition;
- tournament self-rejection for N in config.evaluate.tournament_sizes, on prompts drawn
  evenly over the task families and levels.

This module is the phase: it reads the config, loads the models and writes
run_dir/eval.json; `sjjax.evaluation` computes the metrics, and `sjjax.report` turns
one or more eval.json files into a report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import jax
import ml_collections
import numpy as np

from sjjax.config import ConfigError, save_resolved
from sjjax.data import synthetic
from sjjax.data.readers import read_alpaca_eval
from sjjax.data.sources import load_oracle, read_sources
from sjjax.evaluation import (evaluate_judge, greedy_quality, own_pairs, sampled_quality,
                              stratified_prompts, synthetic_family, tournament_sweep,
                              win_rate_against_references)
from sjjax.generation import Responder
from sjjax.judge import Judge
from sjjax.phases.common import load_policy, sampling_params
from sjjax.sampling import SamplingParams

log = logging.getLogger("sjjax")


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
    records = read_sources(config.data.sources, config.data.on_bad_record, split="heldout",
                           wanted=("prompts", "judgments"))
    ev = config.evaluate
    return (_sample(records.prompts, ev.num_prompts, config.seed),
            _sample(records.judgments, ev.num_pairs, config.seed + 1))


def check_style(config) -> dict:
    """How the synthetic sources write their checks: {rationales, restate} of the first
    one that has rationales ({} if none)."""
    for spec in config.data.sources:
        if spec.get("format") == "synthetic" and spec.get("rationales"):
            return {"rationales": True, "restate": spec.get("restate", False)}
    return {}


def shortcut_proof_judgments(config, rationales: bool = False, restate: bool = False) -> list:
    """The synthetic sources' held-out labelled-pair questions (the draw of their
    labelled pairs, and the same seeded subset of them as `_heldout`) with wrong
    answers that defeat every question-blind rule (`synthetic.shortcut_proof_pairs`)."""
    tasks = []
    for spec in config.data.sources:
        spec = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
        if spec.get("format") != "synthetic" or not spec.get("n_pairs"):
            continue
        seed = int(spec.get("seed", 0))
        directions = {k: tuple(v) for k, v in dict(spec.get("directions") or {}).items()}
        drawn = synthetic.generate(seed, int(spec["n_pairs"]), "heldout",
                                   tuple(spec.get("families", synthetic.FAMILIES)),
                                   tuple(spec.get("levels", (1, 2, 3))), stream="pairs",
                                   directions=directions)
        tasks += [(t, seed, spec.get("principle", "helpfulness")) for t in drawn]
    chosen = _sample(tasks, config.evaluate.num_pairs, config.seed + 1)
    out = []
    for seed, principle in dict.fromkeys((s, p) for _, s, p in chosen):
        group = [t for t, s, p in chosen if (s, p) == (seed, principle)]
        out += [x.judgment(principle, rationales, restate)
                for x in synthetic.shortcut_proof_pairs(group, seed)]
    return out


def tournament_prompts(config, prompts) -> list:
    """The tournament sweep's prompts: config.evaluate.tournament_prompts of them, drawn
    evenly over families and levels (seeded)."""
    return stratified_prompts(prompts, config.evaluate.tournament_prompts, config.seed)


def _judge_policy(config, policy):
    """The model that judges: config.evaluate.judge_source, or the evaluated one."""
    if not config.evaluate.judge_source:
        return policy
    judge_config = ml_collections.ConfigDict(config.to_dict())
    judge_config.model.source = config.evaluate.judge_source
    return load_policy(judge_config)


def run(config):
    ev = config.evaluate
    policy = load_policy(config)
    os.makedirs(config.run_dir, exist_ok=True)
    save_resolved(config, config.run_dir)
    key = jax.random.key(config.seed)
    prompts, judgments = _heldout(config)
    oracle = load_oracle(config)
    responder = Responder.from_config(policy, config.sampling)
    judge_policy = _judge_policy(config, policy)
    judge = Judge.from_config(judge_policy.graphdef, judge_policy, config.judge)
    weights = dict(policy_params=policy.params, policy_lora=policy.lora,
                   judge_params=judge_policy.params, judge_lora=judge_policy.lora)
    results = {"model": config.model.source, "label": ev.label or config.model.source,
               "judge": ev.judge_source or "self"}

    replies: list = []  # [P][samples_per_prompt] sampled texts, judged as own pairs below
    if prompts:
        results["greedy"] = greedy_quality(responder, prompts, key, oracle,
                                           policy_params=policy.params, policy_lora=policy.lora)
        log.info("greedy: %s", results["greedy"])
        if ev.samples_per_prompt:
            results["sampled"] = sampled_quality(
                responder, prompts, jax.random.fold_in(key, 3), oracle,
                sampling_params(config.sampling), ev.samples_per_prompt,
                policy_params=policy.params, policy_lora=policy.lora, replies=replies)
            log.info("sampled: %s", results["sampled"])
    # A judge that writes checks is also scored on them: the pairs carry the true ones,
    # written as the sources wrote the checks it learnt.
    truth = check_style(config) if judge.checks else {}
    proof = shortcut_proof_judgments(config, **truth) if ev.shortcut_proof else []
    own, own_counts = (own_pairs(prompts, replies, **truth)
                       if oracle is not None and prompts and ev.samples_per_prompt >= 2
                       else ([], None))
    for name, pairs, kind in (("judge", judgments, "labelled"),
                              ("judge_shortcut_proof", proof, "shortcut-proof"),
                              ("judge_own_pairs", own, "the model's own informative pairs")):
        if not pairs:
            continue
        results[name] = evaluate_judge(judge, judge_policy.params, judge_policy.lora, pairs,
                                       group=synthetic_family, seed=config.seed).as_dict()
        if name == "judge" and proof:
            kind = "labelled (shortcut-solvable: see judge_shortcut_proof)"
        results[name]["pairs"] = kind
        log.info("%s accuracy %.3f (consistency %.3f, ties %d); best question-blind rule "
                 "%s %.3f%s", name, results[name]["accuracy"],
                 results[name]["position_consistency"], results[name]["ties"],
                 results[name]["baselines"]["best_rule"], results[name]["baselines"]["best"],
                 "" if results[name]["check_accuracy"] is None else
                 f"; its written checks right: {results[name]['check_accuracy']:.3f}")
    if own_counts is not None:  # how the own pairs split, informative or not
        results.setdefault("judge_own_pairs", {"n": 0})["pair_counts"] = \
            dataclasses.asdict(own_counts)
    if ev.tournament_sizes and prompts:
        sweep, _, _ = tournament_sweep(responder, judge, tournament_prompts(config, prompts),
                                       tuple(ev.tournament_sizes), jax.random.fold_in(key, 1),
                                       sampling_params(config.sampling), oracle, **weights)
        results["tournament"] = {str(n): v for n, v in sweep.items()}
    if ev.win_rate_references:
        items = read_alpaca_eval(ev.win_rate_references).eval_items[:ev.win_rate_items]
        results["win_rate"] = win_rate_against_references(
            responder, judge, items, jax.random.fold_in(key, 2), SamplingParams(greedy=True),
            **weights)
    path = os.path.join(config.run_dir, "eval.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    shown = ("greedy", "sampled", "judge", "judge_shortcut_proof", "judge_own_pairs")
    print(f"[evaluate] {results['label']}: " + json.dumps(
        {k: results[k] for k in shown if k in results}, default=str)[:600], flush=True)
    return results
