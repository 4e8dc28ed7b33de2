"""The report shows every judge accuracy beside the question-blind bar."""

import json
import math
import os

from sjjax.report import comparison_rows, judge_table, self_judge_summary, write_report


def _judge(acc, best, pairs):
    rules = dict(longer=0.5, first_shown=0.48, larger_number=best, increasing_list=0.5,
                 reuses_question_numbers=0.5, best=best, best_rule="larger_number")
    return {"accuracy": acc, "position_consistency": 0.9, "longer_wins_accuracy": 0.5,
            "n": 10, "by_group": {}, "ties": 1, "baselines": rules, "pairs": pairs}


def test_report_puts_the_bar_beside_each_judge_accuracy(tmp_path):
    root = str(tmp_path)
    os.makedirs(f"{root}/eval/jsft")
    ev = {"greedy": {"oracle_accuracy": 0.5}, "judge": _judge(0.95, 1.0, "labelled"),
          "judge_shortcut_proof": _judge(0.6, 0.52, "shortcut-proof"),
          "judge_own_pairs": _judge(0.4, 0.9, "the model's own informative pairs")}
    with open(f"{root}/eval/jsft/eval.json", "w") as f:
        json.dump(ev, f)
    row = comparison_rows({"jsft": ev})[0]
    assert (row["judge_accuracy"], row["judge_bar"]) == (0.95, 1.0)
    assert (row["judge_accuracy_shortcut_proof"], row["shortcut_proof_bar"]) == (0.6, 0.52)
    assert (row["judge_accuracy_own_pairs"], row["own_pairs_bar"]) == (0.4, 0.9)
    table = judge_table({"jsft": ev})
    assert any("own informative" in line and "0.900 (larger_number)" in line for line in table)
    assert any("shortcut-proof" in line and "0.520 (larger_number)" in line for line in table)
    text = open(write_report(root)).read()
    assert "question-blind bar" in text and "judge bar" in text


def test_self_judge_summary_pools_the_shortcut_agreement_like_the_judges():
    rows = [{"oracle/informative_pairs": 0.25, "oracle/judge_agreement": 1.0,
             "oracle/shortcut_agreement_best": 0.5, "oracle/judge_shortcut_agreement": 0.5},
            {"oracle/informative_pairs": 0.75, "oracle/judge_agreement": 0.0,
             "oracle/shortcut_agreement_best": 1.0, "oracle/judge_shortcut_agreement": 0.0}]
    s = self_judge_summary(rows)
    assert math.isclose(s["shortcut_agreement_best"], 0.875)
    assert math.isclose(s["judge_shortcut_agreement"], 0.125)
