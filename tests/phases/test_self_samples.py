"""label_samples: which of a policy's own samples become judge pairs (hand-made cases)."""

from sjjax.data.records import Prompt
from sjjax.data.readers import read_preference_jsonl
from sjjax.data.synthetic import write_jsonl
from sjjax.phases.self_samples import label_samples


def _oracle(meta, text):
    return text.strip() == meta["answer"]


def _prompt(answer):
    return Prompt(messages=[{"role": "user", "content": f"say {answer}"}],
                  context=f"User: say {answer}", meta={"answer": answer})


def test_distinct_wrong_samples_pair_with_correct_ones():
    prompts = [_prompt("1"), _prompt("2"), _prompt("3")]
    texts = [["1", "7", "7 ", "8", "1"],   # 2 distinct wrong vs the one correct
             ["5", "6", "6", "5"],          # no correct sample: no pair
             ["3", "3", "3", "3"]]          # no wrong sample: no pair
    rows, counts = label_samples(prompts, texts, _oracle)
    pairs = [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows]
    assert pairs == [("1", "7"), ("1", "8")]
    assert counts["pairs"] == 2 and counts["samples"] == 13 and counts["correct"] == 6
    assert counts["prompts_without_correct"] == 1 and counts["prompts_without_wrong"] == 1
    assert counts["distinct"] == 3 + 2 + 1


def test_empty_samples_are_counted_not_paired(tmp_path):
    # The policy stopping at once gives "", which the preference reader rejects as
    # malformed; such samples must not reach the pairs file.
    rows, counts = label_samples([_prompt("4")], [["", "4", "  ", "9"]], _oracle)
    assert counts["empty"] == 2 and counts["pairs"] == 1
    path = tmp_path / "pairs.jsonl"
    write_jsonl(str(path), rows)
    assert len(read_preference_jsonl(str(path)).judgments) == 1


def test_rationales_reach_the_pairs_file(tmp_path):
    """With `explain`, each row carries the chosen and rejected responses' checks, and
    the preference reader gives them to the judgment (the JM-PR target)."""
    def explain(meta, text):
        return f"{text.strip()} vs {meta['answer']}"
    rows, _ = label_samples([_prompt("4")], [["4", "9"]], _oracle, explain)
    assert (rows[0]["rationale_chosen"], rows[0]["rationale_rejected"]) == ("4 vs 4", "9 vs 4")
    path = tmp_path / "pairs.jsonl"
    write_jsonl(str(path), rows)
    (j,) = read_preference_jsonl(str(path)).judgments
    assert (j.rationale_chosen, j.rationale_rejected) == ("4 vs 4", "9 vs 4")
    plain, _ = label_samples([_prompt("4")], [["4", "9"]], _oracle)
    assert "rationale_chosen" not in plain[0]
