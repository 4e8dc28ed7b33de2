"""Evaluation of a policy and its judge, used by the evaluate and tournament phases.

    metrics        pure metric functions on arrays and strings
    judge_eval     the judge's accuracy on labelled pairs
    responses      the policy's responses and their quality; win rate vs references
    sweep          tournament self-rejection swept over N (stratified prompts)
    shortcuts      question-blind baselines: the bar a judge must clear

    responder = sjjax.generation.Responder.from_config(policy, config.sampling)
    greedy = greedy_quality(responder, prompts, key, oracle, policy_params=p, policy_lora=l)
    judge_eval = evaluate_judge(judge, params, lora, judgments)
    sweep, texts, brackets = tournament_sweep(responder, judge, prompts, (1, 2, 4), key,
                                              sampling, oracle, policy_params=p,
                                              policy_lora=l, judge_params=p, judge_lora=l)
"""

from sjjax.evaluation.judge_eval import JudgeEval, evaluate_judge, synthetic_family
from sjjax.evaluation.metrics import (judge_accuracy, longer_wins_accuracy, mean_or_nan,
                                      repetition_rate, response_stats, win_rate)
from sjjax.evaluation.responses import (Oracle, greedy_quality, own_pairs, prompt_stratum,
                                        respond, response_quality, sampled_quality,
                                        win_rate_against_references)
from sjjax.evaluation.shortcuts import (RULES as SHORTCUT_RULES, baseline_accuracies,
                                        labelled_baselines, rule_votes)
from sjjax.evaluation.sweep import stratified_prompts, tournament_sweep

__all__ = ["JudgeEval", "Oracle", "SHORTCUT_RULES", "baseline_accuracies", "evaluate_judge",
           "greedy_quality", "judge_accuracy", "labelled_baselines", "longer_wins_accuracy",
           "mean_or_nan", "own_pairs", "prompt_stratum", "repetition_rate", "respond",
           "response_quality", "response_stats", "rule_votes", "sampled_quality", "stratified_prompts", "synthetic_family",
           "tournament_sweep", "win_rate", "win_rate_against_references"]
