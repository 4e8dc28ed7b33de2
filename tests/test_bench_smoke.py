"""The benchmark scripts keep running as the code under them changes: the training-step
benchmark at a toy size (2 layers, 2 x 32 tokens). Timings are printed, never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_step_benchmark_runs(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "train_step.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "bench_train_step.py"), "--model",
         "smollm2_135m", "--num-layers", "2", "--batch", "2", "--length", "32", "--repeats",
         "1", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["sjjax_step_s"] > 0 and result["peer_step_s"] > 0
    # 3 x forward FLOPs of 64 tokens of a 2-layer SmolLM2 (the output layer dominates).
    assert result["step_flops"] == pytest.approx(3 * 64 * (2 * (
        2 * (576 * 576 + 2 * 576 * 192 + 576 * 576 + 3 * 576 * 1536) + 2 * 2 * 576 * 16)
        + 2 * 576 * 49152))
    assert "ratio" in proc.stdout


def test_train_step_benchmark_plans_before_allocating():
    """On an H100 (80 GiB) llama_1b at 4 x 2048 ran out of memory without remat (measured,
    bench/RESULTS.md) and fitted at 2 x 1024: the benchmark's planner check agrees."""
    sys.path.insert(0, ROOT)
    from bench.bench_train_step import planned_step
    assert not planned_step("llama_1b", 4, 2048, "none", 80.0).fits
    assert planned_step("llama_1b", 2, 1024, "none", 80.0).fits
    assert planned_step("llama_1b", 4, 2048, "full", 80.0).fits


def test_greedy_headroom_shares_by_hand():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from greedy_headroom import headroom
    # prompt 0: greedy right; 1: greedy wrong, sample 1 right (in the first pair);
    # 2: greedy wrong, only sample 3 right (outside the first pair)
    h = headroom([1, 0, 0], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    assert h["greedy"] == pytest.approx(1 / 3) and h["sampled"] == 0.25
    assert h["pass@k"] == 1.0
    assert h["greedy_wrong_right_in_2"] == pytest.approx(1 / 3)
    assert h["greedy_wrong_right_in_k"] == pytest.approx(2 / 3)
    assert h["informative_pairs"] == 0.5  # pairs (0,1), (2,3): 1+0, 1+0, 0+1 of 6


def test_oracle_controls_set_key_indexes_sequences():
    """--set data.sources.0.n_prompts=2048 reaches the dict inside the sources tuple;
    values are Python literals, else strings."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from oracle_controls import set_key

    from sjjax import presets
    config = presets.make("self_judge", "tiny")
    set_key(config, "data.sources.0.n_prompts", "2048")
    set_key(config, "dpo.nll_weight", "1.0")
    set_key(config, "self_judge.judge", "oracle")
    assert config.data.sources[0]["n_prompts"] == 2048
    assert config.dpo.nll_weight == 1.0 and config.self_judge.judge == "oracle"


def test_judge_rationales_parses_a_continuation_and_reads_a_pass():
    """bench/judge_rationales.py: the decision token and each side's rationale out of a
    greedy judge continuation; PASS recognises exactly the checks of a right reply."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from judge_rationales import PASS, parse

    from sjjax.data import synthetic
    assert parse(" A\nA: 85 is in the question and the larger.\nB: 82 is not in the "
                 "question.") == ("A", "85 is in the question and the larger.",
                                  "82 is not in the question.")
    assert parse("B") == ("B", None, None)
    assert parse("The answer\nA: x") == (None, "x", None)
    meta = dict(family="minmax", level=1, answer="8", items=[34, 12, 8], ask="smallest")
    assert PASS.search(synthetic.explain(meta, "The answer is 8."))
    for wrong in ("The answer is 12.", "The answer is 9.", "8 or 12"):
        assert not PASS.search(synthetic.explain(meta, wrong))
    sort = dict(family="sort", level=1, answer="1, 2", items=[2, 1], order="ascending")
    assert PASS.search(synthetic.explain(sort, "The answer is 1, 2."))
    assert not PASS.search(synthetic.explain(sort, "The answer is 2, 1."))


def test_judge_checks_scores_each_written_line():
    """bench/judge_checks.py: check kinds hide numbers (a copied list as one N); each
    written line is compared with the true check of the reply it is about."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from judge_checks import kind, line_scores

    from sjjax.data import synthetic
    meta = dict(family="minmax", level=1, answer="85", items=[58, 23, 85], ask="largest")
    wrong = synthetic.explain(meta, "The answer is 83.", restate=True)
    assert wrong == "The question has 58, 23, 85. 83 is not in the question."
    assert kind(wrong) == "The question has N. N is not in the question."
    right = synthetic.explain(meta, "The answer is 85.", restate=True)
    written = f"A: {wrong}\nB: The question has 58, 23, 85. 85 is not in the question.\n"
    scores = line_scores(written, (wrong, right), right_is_a=False)
    assert [(s["about"], s["ok"]) for s in scores] == [("wrong", True), ("right", False)]
    assert scores[1]["copied_ok"] and not scores[1]["kind_ok"]
    assert scores[1]["true"] == "The question has N. N is in the question and the largest."
    assert line_scores("", (wrong, right), True)[0]["ok"] is False


def test_membership_probe_batches_by_hand():
    """The probe's labels against a direct membership check; both answers occur; the
    list holds distinct numbers and the layout is [x_1..x_L, SEP, q, ASK]."""
    import numpy as np
    sys.path.insert(0, ROOT)
    from bench import membership_probe as mp
    tokens, target, present, at = mp.membership_batch(np.random.default_rng(3), 400, 5)
    assert (at == 7).all()
    assert tokens.shape == (400, 8)
    assert (tokens[:, 5] == mp.SEP).all() and (tokens[:, 7] == mp.ASK).all()
    for row, t, p in zip(tokens, target, present):
        assert len(set(row[:5])) == 5 and row[:5].max() < 100
        assert p == (row[6] in set(row[:5])) and t == (mp.YES if p else mp.NO)
    assert 0.4 < present.mean() < 0.6


def test_membership_probe_query_first_with_suffix():
    """The suite's order [q, SEP, x_1..x_L, fixed suffix, ASK]: labels against a direct
    check, the suffix the same tokens in every row; an unknown layout is refused."""
    import numpy as np
    import pytest
    sys.path.insert(0, ROOT)
    from bench import membership_probe as mp
    tokens, target, present, _ = mp.membership_batch(np.random.default_rng(4), 300, 8,
                                                     "query-first", 3)
    assert tokens.shape == (300, 1 + 1 + 8 + 3 + 1)
    assert (tokens[:, 1] == mp.SEP).all() and (tokens[:, -1] == mp.ASK).all()
    assert (tokens[:, 10:13] == [mp.FILLER, mp.FILLER + 1, mp.FILLER + 2]).all()
    for row, t, p in zip(tokens, target, present):
        assert p == (row[0] in set(row[2:10])) and t == (mp.YES if p else mp.NO)
    assert 0.4 < present.mean() < 0.6
    with pytest.raises(ValueError, match="layout"):
        mp.membership_batch(np.random.default_rng(0), 2, 5, "sideways")


def test_membership_probe_near_misses():
    """--near: every absent query is a listed number's reversal or neighbour (as the
    suite's membership levels 2-3), and every number is two-digit."""
    import numpy as np
    sys.path.insert(0, ROOT)
    from bench import membership_probe as mp
    tokens, _, present, _ = mp.membership_batch(np.random.default_rng(5), 300, 5, near=True)
    for row, p in zip(tokens, present):
        items, q = [int(x) for x in row[:5]], int(row[6])
        assert min(items) >= 10 and 10 <= q <= 99
        if not p:
            assert q not in items
            assert any(q in (int(str(x)[::-1]), x + 1, x - 1) for x in items)


def test_membership_probe_mixed_lengths():
    """--min-length: list lengths vary within the bounds, rows are left-padded to one
    width, and the label still matches a direct check on the unpadded list."""
    import numpy as np
    sys.path.insert(0, ROOT)
    from bench import membership_probe as mp
    tokens, target, _, _ = mp.membership_batch(np.random.default_rng(6), 300, 8,
                                               "query-first", 0, False, 3)
    assert tokens.shape == (300, 11)
    lengths = set()
    for row, t in zip(tokens, target):
        body = [int(x) for x in row if x != mp.PAD]
        assert row[:len(row) - len(body)].tolist() == [mp.PAD] * (len(row) - len(body))
        q, items = body[0], body[2:-1]
        lengths.add(len(items))
        assert body[1] == mp.SEP and body[-1] == mp.ASK and len(set(items)) == len(items)
        assert (t == mp.YES) == (q in items)
    assert lengths == {3, 4, 5, 6, 7, 8}


def test_membership_probe_suite_batches():
    """--suite: the suite's membership prompts, ending in "The answer is" at `at` (pads
    only after it); the target is " yes" exactly when the query (the number after "Is"
    or "the number") is listed."""
    import re
    import numpy as np
    sys.path.insert(0, ROOT)
    from bench import membership_probe as mp
    batches = mp.SuiteBatches(numbers="pairs")
    tokens, target, present, at = batches(np.random.default_rng(7), 48)
    assert tokens.shape == (48, batches.width)
    pad = batches.tokenizer.pad_token_id
    for row, t, p, i in zip(tokens, target, present, at):
        assert (row[i + 1:] == pad).all() and row[i] != pad
        text = batches.tokenizer.decode(row[:i + 1])
        assert text.endswith("The answer is")
        m = re.search(r"Is (\d+) in the list ([\d, ]+)\?", text) or re.search(
            r"Does the list ([\d, ]+) contain the number (\d+)\?", text)
        query, items = (m.group(1), m.group(2)) if m.re.pattern.startswith("Is") else (
            m.group(2), m.group(1))
        assert p == (int(query) in [int(x) for x in items.split(", ")])
        assert t == batches.answer_ids["yes" if p else "no"]
    assert 0.3 < present.mean() < 0.7


def test_membership_probe_runs():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "membership_probe.py"),
                           "--lr", "3e-4", "--steps", "3", "--batch", "4"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "jax lr=0.0003: accuracy over the last 20 batches" in proc.stdout


def test_pipeline_seeds_gives_each_seed_then_mean_and_range(tmp_path):
    from bench.pipeline_seeds import figures, markdown, summarise
    roots = []
    for seed, (greedy, own, sj1) in enumerate(((0.5, 0.6, 0.25), (0.7, 0.8, 0.75))):
        root = tmp_path / f"seed{seed}"
        for name, acc in (("jsft", greedy), ("self_judge_1", sj1)):
            ev = {"greedy": {"oracle_accuracy": acc}}
            if name == "jsft":
                ev["judge_own_pairs"] = {"accuracy": own, "n": 40 + seed,
                                         "baselines": {"best": 0.9, "best_either_way": 0.9}}
                ev["tournament"] = {"1": {"oracle_accuracy": 0.4},
                                    "16": {"oracle_accuracy": 0.3 + seed / 10,
                                           "oracle_best_of_n": 0.8}}
            (root / "eval" / name).mkdir(parents=True)
            (root / "eval" / name / "eval.json").write_text(json.dumps(ev))
        (root / "self_judge_1").mkdir()
        (root / "self_judge_1" / "metrics.jsonl").write_text("".join(
            json.dumps({"step": s, "phase": "self_judge", "oracle/informative_pairs": w,
                        "oracle/judge_agreement": a, "oracle/shortcut_agreement_best": 1.0})
            + "\n" for s, w, a in ((1, 0.25, 1.0), (2, 0.75, 0.0))))
        roots.append(str(root))
    summary = summarise([figures(r) for r in roots])
    greedy = summary["jsft: greedy accuracy"]
    assert greedy["values"] == pytest.approx([0.5, 0.7])
    assert (greedy["mean"], greedy["min"], greedy["max"]) == pytest.approx((0.6, 0.5, 0.7))
    assert summary["jsft judge, own informative pairs"]["mean"] == pytest.approx(0.7)
    assert summary["jsft judge, own informative pairs: bar"]["mean"] == pytest.approx(0.9)
    # pooled over steps by informative pairs: (0.25 * 1 + 0.75 * 0) / 1.0
    assert summary["self_judge_1 training: judge agreement on own pairs"]["values"] == \
        pytest.approx([0.25, 0.25])
    assert summary["jsft tournament N=16"]["values"] == pytest.approx([0.3, 0.4])
    table = markdown(summary, roots)
    assert "| jsft judge, own informative pairs: n | 40 | 41 | **40.500** | 40-41 |" in table
    assert "| self_judge_1: greedy accuracy | 0.250 | 0.750 | **0.500** | 0.250-0.750 |" in table
