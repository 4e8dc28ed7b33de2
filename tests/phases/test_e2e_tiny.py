"""End to end on the CPU default (tiny preset): every phase runs and leaves its outputs,
and learning is real.

Margins (measured, see docs/results.md): JSFT of the tiny model for 300 steps, seeds
0/1/2, gave greedy oracle accuracy 0.27 / 0.22 / 0.24 on 96 held-out prompts (the
untrained model: 0.00 for every seed) and judge accuracy 0.85 / 0.82 / 0.74 on 96
held-out labelled pairs (untrained: 0.47 / 0.57 / 0.56: it prefers one position). The
test asserts margins of 0.10 on both, about half the smallest measured gap.
"""

from __future__ import annotations

import json
import os

import pytest

from sjjax.phases import run_phase
from tests.phases.tiny_config import apply_overrides

JSFT_STEPS = 300
GREEDY_MARGIN = 0.10   # JSFT greedy accuracy must exceed the untrained model's by this
JUDGE_MARGIN = 0.10    # and its judge accuracy too


def full_size(phase, root, **overrides):
    """The real tiny preset (full model and data), only fewer steps and a smaller eval."""
    from sjjax import presets
    c = presets.make(phase, "tiny")
    c.run_dir = f"{root}/{phase}"
    c.data.tfds_dir = f"{root}/tfds"
    c.log.progress = False
    c.log.tensorboard = False
    c.evaluate.num_prompts = 96
    c.evaluate.num_pairs = 96
    c.evaluate.tournament_sizes = ()
    c.evaluate.samples_per_prompt = 0  # greedy only here (the notebook's pipeline samples)
    return apply_overrides(c, overrides)


def evaluate(root, name, source, **overrides):
    c = full_size("evaluate", root, **{"model.source": source, **overrides})
    c.run_dir = f"{root}/eval_{name}"
    return run_phase(c)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tiny"))
    run_phase(full_size("jsft", root, **{"train.steps": JSFT_STEPS}))
    return root


def test_jsft_beats_untrained_model(tiny_runs):
    trained = evaluate(tiny_runs, "jsft", f"{tiny_runs}/jsft",
                       **{"evaluate.samples_per_prompt": 2})
    untrained = evaluate(tiny_runs, "untrained", "tiny")
    assert untrained["greedy"]["oracle_accuracy"] < 0.05
    assert (trained["greedy"]["oracle_accuracy"]
            >= untrained["greedy"]["oracle_accuracy"] + GREEDY_MARGIN), (trained, untrained)
    assert (trained["judge"]["accuracy"]
            >= untrained["judge"]["accuracy"] + JUDGE_MARGIN), (trained, untrained)
    assert trained["judge"]["accuracy"] > trained["judge"]["longer_wins_accuracy"]
    # The own pairs: one per prompt (2 samples), every one counted, the informative judged.
    own = trained["judge_own_pairs"]
    assert sum(own["pair_counts"].values()) == 96
    assert own["n"] == own["pair_counts"]["informative"]
    assert trained["sampled"]["samples_per_prompt"] == 2


def test_self_judge_and_tournament_run_from_jsft(tiny_runs):
    c = full_size("self_judge", tiny_runs, **{"model.source": f"{tiny_runs}/jsft",
                                               "self_judge.steps": 4,
                                               "self_judge.prompts_per_step": 16})
    summary = run_phase(c)
    assert os.path.exists(f"{c.run_dir}/final/meta.json")
    assert 0 <= summary["oracle/sample_accuracy"] <= 1
    rows = [json.loads(l) for l in open(f"{c.run_dir}/metrics.jsonl")]
    assert len(rows) == 4 and all("judge/position_consistency" in r for r in rows)

    t = full_size("tournament", tiny_runs, **{"model.source": c.run_dir,
                                               "tournament.num_candidates": (1, 2, 4),
                                               "tournament.num_prompts": 8,
                                               "tournament.split": "heldout"})
    sweep = run_phase(t)
    assert sorted(sweep) == [1, 2, 4]
    assert [sweep[n]["matches_per_prompt"] for n in (1, 2, 4)] == [0, 1, 3]
    lines = open(f"{t.run_dir}/responses.jsonl").read().splitlines()
    assert len(lines) == 8 and len(json.loads(lines[0])["candidates"]) == 4
