"""The report: comparison table values, N-sweep and iteration plots, from eval files."""

import json
import os

import math

from sjjax.report import self_judge_summary, write_report


def _eval(root, name, greedy, judge, tournament=None):
    os.makedirs(f"{root}/eval/{name}", exist_ok=True)
    data = {"greedy": {"oracle_accuracy": greedy, "length_tokens": 10.0,
                       "repetition_4gram": 0.0},
            "sampled": {"oracle_accuracy": greedy / 2},
            "judge": {"accuracy": judge, "position_consistency": 0.8,
                      "longer_wins_accuracy": 0.5, "n": 64}}
    if tournament:
        data["tournament"] = tournament
    with open(f"{root}/eval/{name}/eval.json", "w") as f:
        json.dump(data, f)


def test_report_table_and_plots(tmp_path):
    root = str(tmp_path)
    _eval(root, "jsft", 0.5, 0.9)
    sweep = {str(n): {"oracle_accuracy": 0.5 + 0.05 * i, "length_tokens": 10.0 + i,
                      "repetition_4gram": 0.0, "oracle_best_of_n": 0.6 + 0.05 * i}
             for i, n in enumerate((1, 2, 4, 8, 16))}
    _eval(root, "self_judge_1", 0.6, 0.85, sweep)
    _eval(root, "base", 0.0, 0.5)
    os.makedirs(f"{root}/self_judge_1")
    with open(f"{root}/self_judge_1/metrics.jsonl", "w") as f:
        for step in range(1, 4):
            f.write(json.dumps({"step": step, "phase": "self_judge",
                                "oracle/sample_accuracy": 0.1 * step,
                                "oracle/judge_agreement": 0.9,
                                "judge/position_consistency": 0.8,
                                "rewards/margins": 0.1}) + "\n")
    path = write_report(root)
    text = open(path).read()
    lines = text.splitlines()
    row = next(l for l in lines if l.startswith("| JSFT "))
    assert "| 0.500 | 0.250 | 0.900 | 0.800 |" in row  # greedy, sampled, judge, consistency
    base = next(i for i, l in enumerate(lines) if l.startswith("| Base"))
    jsft = next(i for i, l in enumerate(lines) if l.startswith("| JSFT "))
    assert base < jsft  # models in pipeline order
    assert "Self-Judge (1 iter.) + tournament N=16 | 0.700" in text
    for name in ("n_sweep_self_judge_1.png", "iterations.png", "self_judge.png"):
        assert os.path.getsize(os.path.join(os.path.dirname(path), name)) > 1000


def test_self_judge_summary_pools_agreement_over_informative_pairs():
    rows = [{"oracle/informative_pairs": 0.25, "oracle/judge_agreement": 1.0,
             "pairs/identical": 0.5, "oracle/sample_accuracy": 0.2},
            {"oracle/informative_pairs": 0.0, "oracle/judge_agreement": float("nan"),
             "pairs/identical": 0.7, "oracle/sample_accuracy": 0.4},
            {"oracle/informative_pairs": 0.75, "oracle/judge_agreement": 0.0,
             "pairs/identical": 0.3, "oracle/sample_accuracy": 0.6}]
    s = self_judge_summary(rows, edge_steps=2)
    # (0.25 * 1 + 0.75 * 0) / (0.25 + 0.75): the step with no informative pair is out.
    assert math.isclose(s["judge_agreement"], 0.25)
    assert math.isclose(s["identical_pairs"], 0.5)
    assert math.isclose(s["sample_accuracy_first"], 0.3)
    assert math.isclose(s["sample_accuracy_last"], 0.5)
    assert s["steps"] == 3


def test_sweep_tables_split_the_per_stratum_accuracy_out_of_the_scalar_table():
    from sjjax.report import sweep_tables
    tour = {"1": {"oracle_accuracy": 0.5, "oracle_accuracy_by_stratum":
                  {"compare:1": 0.9, "sort:2": 0.0}},
            "16": {"oracle_accuracy": 0.25, "oracle_accuracy_by_stratum":
                   {"compare:1": 0.5, "sort:2": 0.125}}}
    lines = sweep_tables(tour)
    assert lines[0] == "| N | oracle accuracy |"
    assert lines[2:4] == ["| 1 | 0.500 |", "| 16 | 0.250 |"]  # numeric order of N
    assert not any("{" in line for line in lines)               # no dict printed
    assert "| stratum | N=1 | N=16 |" in lines
    assert "| compare:1 | 0.900 | 0.500 |" in lines
    assert "| sort:2 | 0.000 | 0.125 |" in lines


def test_the_oracle_control_is_a_row_of_its_own_not_an_iteration(tmp_path):
    root = str(tmp_path)
    _eval(root, "jsft", 0.5, 0.9)
    _eval(root, "self_judge_1", 0.25, 0.9)
    _eval(root, "self_judge_oracle", 0.5, 0.9)
    for run, agreement in (("self_judge_1", 0.4), ("self_judge_oracle", 1.0)):
        os.makedirs(f"{root}/{run}")
        with open(f"{root}/{run}/metrics.jsonl", "w") as f:
            f.write(json.dumps({"step": 1, "phase": "self_judge",
                                "oracle/informative_pairs": 0.5,
                                "oracle/judge_agreement": agreement,
                                "oracle/sample_accuracy": 0.3}) + "\n")
    text = open(write_report(root)).read()
    lines = text.splitlines()
    rows = [l for l in lines if l.startswith("| Control: iteration 1 with the oracle judge |")]
    assert len(rows) == 2                    # the comparison table and the training table
    assert "| 0.500 | 0.250 |" in rows[0]   # its greedy and sampled accuracy
    assert "| 1 | – | 0.500 | 1.000 |" in rows[1]  # steps, identical, informative, agreement
    first = next(i for i, l in enumerate(lines) if l.startswith("| Self-Judge (1 iter.) |"))
    assert first < lines.index(rows[0])      # after the iterations
