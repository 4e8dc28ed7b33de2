"""The synthetic task suite: determinism, answer balance, the oracle on hand-written
responses, wrong answers, the held-out split, pairs from samples, files."""

from __future__ import annotations

import collections
import json
import random

import pytest

from sjjax.data import synthetic as S
from sjjax.data.synthetic.negatives import _no_carry
from sjjax.data.records import Prompt, render_context, user_turn


def content_key(meta: dict):
    """The instance's identity, recomputed from meta (not from the generator's key)."""
    skip = {"task", "answer"}
    return tuple(sorted((k, json.dumps(v)) for k, v in meta.items() if k not in skip))


# --------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------

def _dump(tasks):
    return [(t.question, t.answer, json.dumps(t.meta, sort_keys=True), t.source) for t in tasks]


def test_generation_is_deterministic_for_a_seed():
    a, b = S.generate(3, 12), S.generate(3, 12)
    assert _dump(a) == _dump(b)
    assert _dump(S.generate(4, 12)) != _dump(a)
    assert [c.messages for c in S.sft_conversations(a, 0.3, seed=3)] == \
        [c.messages for c in S.sft_conversations(b, 0.3, seed=3)]
    assert S.judgments(a, seed=3) == S.judgments(b, seed=3)
    assert _dump(S.generate(3, 12, "heldout")) == _dump(S.generate(3, 12, "heldout"))


def test_cli_writes_identical_files_for_a_seed(tmp_path):
    args = ["--seed", "1", "--n-sft", "6", "--n-pairs", "5", "--n-heldout", "4"]
    assert S.main(["--out", str(tmp_path / "a")] + args) == 0
    assert S.main(["--out", str(tmp_path / "b")] + args) == 0
    for name in ("sft.jsonl", "pairs.jsonl", "prompts.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    cells = len(S.FAMILIES) * 3
    sft = [json.loads(x) for x in (tmp_path / "a" / "sft.jsonl").read_text().splitlines()]
    pairs = [json.loads(x) for x in (tmp_path / "a" / "pairs.jsonl").read_text().splitlines()]
    assert len(sft) == 6 * cells and len(pairs) == 5 * cells
    assert [m["role"] for m in sft[0]["messages"]] == ["user", "assistant"]
    # TRL conversational preference format.
    row = pairs[0]
    assert set(row) == {"prompt", "chosen", "rejected"}
    assert [m["role"] for m in row["prompt"]] == ["user"]
    assert [m["role"] for m in row["chosen"]] == ["assistant"] == \
        [m["role"] for m in row["rejected"]]
    assert row["chosen"][0]["content"].startswith("The answer is ")
    # Held-out prompts read back with their meta; the oracle works on them.
    prompts = S.read_prompts(str(tmp_path / "a" / "prompts.jsonl"))
    assert len(prompts) == 4 * cells
    p = prompts[0]
    assert p.context == render_context(p.messages)
    assert S.score(p.meta, S.respond(p.meta["answer"])) == 1.0


def test_read_prompts_names_the_bad_line(tmp_path):
    path = tmp_path / "prompts.jsonl"
    good = S.prompt_row(S.generate(0, 1, "heldout", ["compare"], [1])[0].prompt())
    path.write_text(json.dumps(good) + "\n" + json.dumps({"messages": []}) + "\n")
    with pytest.raises(ValueError, match=r"prompts.jsonl:2"):
        S.read_prompts(str(path))


# --------------------------------------------------------------------------
# Balance: no prior wins
# --------------------------------------------------------------------------

def _frac(values, target):
    return sum(v == target for v in values) / len(values)


@pytest.mark.parametrize("split,n", [("train", 240), ("heldout", 120)])
def test_answer_classes_are_balanced(split, n):
    tasks = S.generate(7, n, split)
    by = collections.defaultdict(list)
    for t in tasks:
        by[t.family, t.level].append(t.meta)
    tol = 0.06
    for level in (1, 2, 3):
        cmp_ = by["compare", level]
        assert abs(_frac([m["numbers"][0] == int(m["answer"]) for m in cmp_], True) - 0.5) <= tol
        assert abs(_frac([m["ask"] for m in cmp_], "larger") - 0.5) <= tol
        mem = by["membership", level]
        assert abs(_frac([m["answer"] for m in mem], "yes") - 0.5) <= tol
        # Where the member stands in the list: uniform.
        positions = [m["items"].index(m["query"]) for m in mem if m["answer"] == "yes"]
        length = S.LEVELS["membership"][level]["length"]
        for pos in range(length):
            assert abs(_frac(positions, pos) - 1 / length) <= 0.1
        srt = by["sort", level]
        assert abs(_frac([m["order"] for m in srt], "ascending") - 0.5) <= tol
        mm = by["minmax", level]
        assert abs(_frac([m["ask"] for m in mm], "smallest") - 0.5) <= tol
        length = S.LEVELS["minmax"][level]["length"]
        positions = [m["items"].index(int(m["answer"])) for m in mm]
        for pos in range(length):
            assert abs(_frac(positions, pos) - 1 / length) <= 0.07, (level, pos)
        cnt = by["count", level]
        counts = S.LEVELS["count"][level]["counts"]
        for k in counts:
            assert abs(_frac([int(m["answer"]) for m in cnt], k) - 1 / len(counts)) <= tol
        # The count is right: the answer is how often the word occurs.
        assert all(m["items"].count(m["word"]) == int(m["answer"]) for m in cnt)
        ar = by["arithmetic", level]
        assert abs(_frac([m["op"] for m in ar], "+") - 0.5) <= tol


def test_wrong_answers_are_above_as_often_as_below():
    rng = random.Random(0)
    for family in ("arithmetic", "count"):
        tasks = S.generate(1, 200, "train", [family])
        above = [int(S.wrong_answer(t.meta, rng)[0]) > int(t.answer) for t in tasks]
        assert abs(_frac(above, True) - 0.5) <= 0.06, family


# --------------------------------------------------------------------------
# The oracle on hand-written responses (truth computed by hand)
# --------------------------------------------------------------------------

COMPARE = dict(family="compare", level=2, answer="52", numbers=[47, 52], ask="larger")
ARITH = dict(family="arithmetic", level=2, answer="85", a=47, b=38, op="+")
MEMBER_YES = dict(family="membership", level=1, answer="yes", items=[12, 45, 7, 33], query=45)
MEMBER_NO = dict(family="membership", level=1, answer="no", items=[12, 45, 7, 33], query=54)
SORT = dict(family="sort", level=2, answer="3, 5, 9, 12", items=[5, 12, 3, 9],
            order="ascending")
MINMAX = dict(family="minmax", level=2, answer="8", items=[34, 12, 56, 8, 91], ask="smallest")
COUNT = dict(family="count", level=1, answer="3", items=["cat", "dog", "cat", "owl", "cat"],
             word="cat")

CASES = [
    (COMPARE, "The answer is 52.", 1), (COMPARE, "The larger number is 52.", 1),
    (COMPARE, "52 is larger than 47.", 1), (COMPARE, "47 is smaller than 52.", 1),
    (COMPARE, "**52**", 1), (COMPARE, "\\boxed{52}", 1),
    (COMPARE, "The smaller one is 47. The larger is 52.", 1),
    (COMPARE, "The answer is 47.", 0), (COMPARE, "47 is larger than 52.", 0),
    (COMPARE, "47 or 52", 0), (COMPARE, "The answer is 52 or 47.", 0),
    (COMPARE, "The answer is 47 or 52.", 0), (COMPARE, "Both 47 and 52.", 0),
    (COMPARE, "The larger number is 47 and the smaller number is 52.", 0),
    (COMPARE, "The number is 47. The number is 52.", 0), (COMPARE, "", 0),
    (ARITH, "The answer is 85.", 1), (ARITH, "47 + 38 = 85", 1),
    (ARITH, "The sum of 47 and 38 is 85.", 1), (ARITH, "85", 1),
    (ARITH, "The answer is 75.", 0), (ARITH, "47 + 38 = 75", 0), (ARITH, "85 or 86", 0),
    (ARITH, "The answer is 850.", 0), (ARITH, "It is 85.5", 0),
    (ARITH, "Adding 47 and 38 we get 85, or maybe 86", 0),
    (MEMBER_YES, "The answer is yes.", 1), (MEMBER_YES, "Yes, 45 is in the list.", 1),
    (MEMBER_YES, "45 is in the list.", 1), (MEMBER_YES, "The list contains 45.", 1),
    (MEMBER_YES, "No, 45 is not in the list.", 0), (MEMBER_YES, "The answer is no.", 0),
    (MEMBER_YES, "Yes or no.", 0), (MEMBER_YES, "The answer is yes or no.", 0),
    (MEMBER_YES, "I am not sure.", 0),
    (MEMBER_NO, "54 is not in the list.", 1), (MEMBER_NO, "The list does not contain 54.", 1),
    (MEMBER_NO, "No.", 1), (MEMBER_NO, "No, the answer is not 54.", 1),
    (MEMBER_NO, "The answer is yes.", 0), (MEMBER_NO, "Yes, 54 is in the list.", 0),
    (SORT, "The answer is 3, 5, 9, 12.", 1), (SORT, "3, 5, 9, 12", 1),
    (SORT, "[3, 5, 9, 12]", 1), (SORT, "Sorted: 3, 5, 9 and 12.", 1),
    (SORT, "1. 3\n2. 5\n3. 9\n4. 12", 1), (SORT, "Sorting 5, 12, 3, 9 gives 3, 5, 9, 12.", 1),
    (SORT, "The answer is 3, 5, 12, 9.", 0), (SORT, "The answer is 12, 9, 5, 3.", 0),
    (SORT, "The answer is 3, 5, 9.", 0), (SORT, "The answer is 3.", 0),
    (SORT, "The answer is 5, 12, 3, 9.", 0), (SORT, "3, 5, 9, 12 or 12, 9, 5, 3", 0),
    (SORT, "The answer is 3, 5, 9, 12 or 3, 5, 12, 9.", 0),
    (SORT, "The answer is 3, 3, 9, 12.", 0),
    (MINMAX, "The answer is 8.", 1), (MINMAX, "The smallest number in the list is 8.", 1),
    (MINMAX, "The smallest number in the list 34, 12, 56, 8, 91 is 8.", 1),
    (MINMAX, "8", 1), (MINMAX, "The largest is 91 and the smallest is 8.", 1),
    (MINMAX, "The smallest is 8 and the largest is 91.", 1),
    (MINMAX, "The answer is 12.", 0), (MINMAX, "The smallest number is 91, 8.", 0),
    (MINMAX, "The smallest number in the list 34, 12, 56, 8, 91 is 34.", 0),
    (MINMAX, "The numbers are 34, 12, 56, 8, 91.", 0),
    (COUNT, "The answer is 3.", 1), (COUNT, "The word cat appears 3 times.", 1),
    (COUNT, "cat appears three times in the list.", 1), (COUNT, "There are 3 cats.", 1),
    (COUNT, "The answer is three.", 1), (COUNT, "3", 1),
    (COUNT, "The word cat appears twice.", 0), (COUNT, "The answer is 2 or 3.", 0),
    (COUNT, "The answer is 4.", 0), (COUNT, "cat appears 1 time, dog 1 time.", 0),
]


@pytest.mark.parametrize("meta,response,expected", CASES,
                         ids=[f"{m['family']}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_oracle_on_hand_written_responses(meta, response, expected):
    assert S.score(meta, response) == float(expected), S.extract_answer(meta, response)


def test_oracle_accepts_every_demonstration_and_rejects_the_other_candidate():
    for t in S.generate(2, 30):
        assert S.score(t.meta, t.demonstration()) == 1.0, t
        if t.family == "compare":
            other = [x for x in t.meta["numbers"] if str(x) != t.answer][0]
            both = f"The answer is {t.meta['numbers'][0]} or {t.meta['numbers'][1]}."
            assert S.score(t.meta, S.respond(str(other))) == 0.0
            assert S.score(t.meta, both) == 0.0


# --------------------------------------------------------------------------
# Wrong answers: wrong by the oracle, same shape, several kinds
# --------------------------------------------------------------------------

def _shape(family, answer):
    if family == "sort":
        return [len(x) for x in answer.split(", ")]
    if family == "membership":
        return "yes/no"
    return len(answer)


def test_wrong_answers_are_wrong_and_have_the_right_answers_shape():
    tasks = S.generate(5, 60)
    pairs = S.labelled_pairs(tasks, seed=5)
    kinds = collections.defaultdict(collections.Counter)
    for task, pair in zip(tasks, pairs):
        assert pair.chosen == task.demonstration()
        assert S.score(task.meta, pair.chosen) == 1.0
        assert S.score(task.meta, pair.rejected) == 0.0, (task.question, pair.rejected)
        wrong = pair.rejected[len("The answer is "):-1]
        assert pair.rejected == S.respond(wrong)
        assert wrong != task.answer
        assert _shape(task.family, wrong) == _shape(task.family, task.answer), (task, wrong)
        if task.family == "sort":  # the same numbers (or one doubled), rearranged
            assert set(wrong.split(", ")) <= set(task.answer.split(", "))
        kinds[task.family][pair.kind] += 1
    assert len(kinds["arithmetic"]) >= 4, kinds["arithmetic"]
    assert len(kinds["sort"]) >= 4, kinds["sort"]
    assert len(kinds["minmax"]) >= 3, kinds["minmax"]
    assert len(kinds["count"]) >= 3, kinds["count"]
    # The carry error of a concrete sum, computed by hand: 58 + 34 = 92 -> 82.
    assert _no_carry(58, 34, "+") == 82 and _no_carry(52, 7, "-") == 55


def test_judgments_use_the_rendered_user_turn_as_context():
    tasks = S.generate(0, 2, families=["sort"], levels=[1])
    for task, j in zip(tasks, S.judgments(tasks, seed=0)):
        assert j.context == render_context([user_turn(task.question)])
        assert j.context.startswith("User: ")
        assert j.chosen == task.demonstration() and j.rejected != j.chosen
        assert j.messages == task.messages


def test_sft_has_exactly_the_requested_fraction_of_wrong_demonstrations():
    tasks = S.generate(0, 10)  # 180 tasks
    convs = S.sft_conversations(tasks, wrong_fraction=0.25, seed=0)
    wrong = [S.score(t.meta, c.messages[-1]["content"]) == 0.0 for t, c in zip(tasks, convs)]
    assert sum(wrong) == round(0.25 * len(tasks))
    assert wrong == [c.source.endswith(":wrong") for c in convs]
    assert all(c.messages[0] == t.messages[0] for t, c in zip(tasks, convs))
    assert not any(S.score(t.meta, c.messages[-1]["content"]) == 0.0
                   for t, c in zip(tasks, S.sft_conversations(tasks, 0.0)))


# --------------------------------------------------------------------------
# Held-out split
# --------------------------------------------------------------------------

def test_heldout_is_disjoint_from_training_and_stable_across_seeds():
    train = {content_key(t.meta) for seed in (0, 1) for stream in ("sft", "pairs")
             for t in S.generate(seed, 150, "train", stream=stream)}
    heldout = [t for seed in (0, 2) for t in S.generate(seed, 40, "heldout", stream="eval")]
    assert not train & {content_key(t.meta) for t in heldout}
    # Distinct within a cell wherever the cell's held-out space allows.
    for family in S.FAMILIES:
        for level in (1, 2, 3):
            cell = [t for t in heldout[:len(heldout) // 2]
                    if t.family == family and t.level == level]
            distinct = len({content_key(t.meta) for t in cell})
            assert distinct == len(cell) or (level == 1 and family in ("compare",
                                                                        "arithmetic")), \
                (family, level, distinct)
    # Prompts carry what the oracle needs.
    p = heldout[0].prompt()
    assert isinstance(p, Prompt) and p.meta["family"] == heldout[0].family
    assert p.context == render_context(p.messages)


# --------------------------------------------------------------------------
# Pairs from a model's own samples
# --------------------------------------------------------------------------

def test_pairs_from_samples_on_a_hand_made_example():
    prompts = [Prompt((user_turn("q"),), "User: q", meta, f"p{i}")
               for i, meta in enumerate([COMPARE, COMPARE, ARITH, MEMBER_YES, SORT, COUNT])]
    a = ["The answer is 52.",   # identical (both right)
         "The answer is 52.",   # both right, different words
         "47 + 38 = 75",        # both wrong
         "No.",                 # b right
         "The answer is 3, 5, 9, 12.",  # a right
         "The answer is 4. "]   # identical after stripping (both wrong)
    b = ["The answer is 52.", "52 is larger than 47.", "The answer is 86.", "Yes, it is.",
         "The answer is 3, 5, 12, 9.", "The answer is 4."]
    judgments, counts = S.pairs_from_samples(prompts, a, b)
    assert (counts.identical, counts.both_correct, counts.both_wrong, counts.informative) == \
        (2, 1, 1, 2)
    assert counts.total == 6
    assert [(j.chosen, j.rejected) for j in judgments] == [
        ("Yes, it is.", "No."), ("The answer is 3, 5, 9, 12.", "The answer is 3, 5, 12, 9.")]
    assert [j.context for j in judgments] == ["User: q", "User: q"]
    assert judgments[0].source.startswith("p3")
    assert judgments[0].messages == prompts[3].messages
    with pytest.raises(ValueError):
        S.pairs_from_samples(prompts, a, b[:-1])


@pytest.mark.parametrize("meta,response,expected", [
    (COMPARE, "The answer is 52.", "52 is in the question and the larger."),
    (COMPARE, "The answer is 47.", "47 is in the question, but 52 is larger."),
    (COMPARE, "The answer is 53.", "53 is not in the question."),
    (MINMAX, "The answer is 8.", "8 is in the question and the smallest."),
    (MINMAX, "The answer is 12.", "12 is in the question, but 8 is smaller."),
    (MINMAX, "The answer is 7.", "7 is not in the question."),
    (SORT, "The answer is 3, 5, 9, 12.", "Every number is there, in ascending order."),
    (SORT, "The answer is 3, 5, 12, 9.", "Every number is there, not in ascending order."),
    (SORT, "The answer is 3, 5, 9, 13.", "13 is not in the question."),
    (SORT, "The answer is 3, 5, 9.", "12 is missing."),
    (SORT, "The answer is 3, 5, 5, 9, 12.", "5 is there twice."),
    (ARITH, "The answer is 85.", "85 is right."),
    (ARITH, "The answer is 75.", "75 is wrong; the answer is 85."),
    (COMPARE, "47 or 52", "It gives no single answer."),
])
def test_rationale_checks_the_response_against_its_question(meta, response, expected):
    assert S.explain(meta, response) == expected


@pytest.mark.parametrize("meta,response,expected", [
    (COMPARE, "The answer is 52.", "The answer is 52. 52 is right."),
    (COMPARE, "The answer is 53.", "The answer is 52. 53 is wrong."),
    (MINMAX, "The answer is 12.", "The answer is 8. 12 is wrong."),
    (SORT, "The answer is 3, 5, 9, 12.", "The answer is 3, 5, 9, 12. 3, 5, 9, 12 is right."),
    (SORT, "The answer is 3, 5, 12, 9.", "The answer is 3, 5, 9, 12. 3, 5, 12, 9 is wrong."),
    (ARITH, "The answer is 75.", "The answer is 85. 75 is wrong."),
    (COMPARE, "47 or 52", "The answer is 52. It gives no single answer."),
])
def test_rationale_stating_the_answer_first(meta, response, expected):
    """restate="answer": the question's answer first, then right or wrong, never the
    answer after the response's number (which a judge could copy from the other one)."""
    assert S.explain(meta, response, restate="answer") == expected


def test_a_synthetic_source_with_rationales_explains_both_responses():
    from sjjax.data.sources import read_source
    from sjjax.errors import ConfigError
    spec = dict(format="synthetic", seed=3, n_pairs=12, families=("compare", "minmax", "sort"),
                levels=(1,), pairs="shortcut_proof")
    plain = read_source(spec, wanted=("judgments",)).judgments
    explained = read_source({**spec, "rationales": True}, wanted=("judgments",)).judgments
    assert [(j.chosen, j.rejected) for j in plain] == [(j.chosen, j.rejected) for j in explained]
    assert all(j.rationale_chosen is None for j in plain)
    tasks = {t.source: t for t in S.generate(3, 12, "train", ("compare", "minmax", "sort"), (1,),
                                             stream="pairs")}
    for j in explained:
        meta = tasks[j.source].meta
        assert j.rationale_chosen == S.explain(meta, j.chosen)
        assert j.rationale_rejected == S.explain(meta, j.rejected)
        assert j.rationale_chosen.endswith(("the largest.", "the smallest.", "the larger.",
                                            "the smaller.", "order."))
    with pytest.raises(ConfigError, match=r"config\.data\.sources\[0\]\.rationales"):
        read_source({**spec, "rationales": "yes"}, wanted=("judgments",))
    answered = read_source({**spec, "rationales": True, "restate": "answer"},
                           wanted=("judgments",)).judgments
    for j in answered:
        meta = tasks[j.source].meta
        assert j.rationale_chosen == S.explain(meta, j.chosen, restate="answer")
        assert j.rationale_chosen.startswith(f"The answer is {meta['answer']}. ")
        assert j.rationale_chosen.endswith(" is right.")
    with pytest.raises(ConfigError, match=r"config\.data\.sources\[0\]\.restate"):
        read_source({**spec, "rationales": True, "restate": "numbers"}, wanted=("judgments",))


def test_pairs_file_reads_back_as_the_same_judgments(tmp_path):
    """The TRL-style file is what a user's own preference data looks like: the generic
    reader turns it into the judgments the suite builds directly."""
    from sjjax.data.readers import read_preference_jsonl
    tasks = S.generate(0, 2)
    path = str(tmp_path / "pairs.jsonl")
    assert S.write_preference_jsonl(path, S.labelled_pairs(tasks, seed=0)) == len(tasks)
    read = read_preference_jsonl(path).judgments
    direct = S.judgments(tasks, seed=0)
    assert [(j.context, j.chosen, j.rejected, j.messages) for j in read] == \
        [(j.context, j.chosen, j.rejected, j.messages) for j in direct]


def test_right_and_wrong_answers_have_the_same_smollm2_token_count(tokenizer):
    tasks = S.generate(1, 10)
    for task, pair in zip(tasks, S.labelled_pairs(tasks, seed=1)):
        lengths = [len(tokenizer(x, add_special_tokens=False)["input_ids"])
                   for x in (pair.chosen, pair.rejected)]
        assert lengths[0] == lengths[1], (task.question, pair.chosen, pair.rejected)


def test_shortcut_proof_wrong_answers_are_of_every_kind():
    """Wrong numbers above and below the right one, inside and outside the question, the
    policy's own kind (off by one, absent from the question), and sorted-looking lists."""
    tasks = S.generate(0, 300, "heldout", ("minmax", "sort"), (2,), stream="pairs")
    kinds = [p.kind for p in S.shortcut_proof_pairs(tasks, 0)]
    for prefix in ("inside_above", "inside_below", "absent_+", "absent_-", "hedge",
                   "inserted", "dropped", "adjacent_swap"):
        assert any(k.startswith(prefix) for k in kinds), prefix


def test_reading_only_the_wanted_kinds_draws_the_same_records():
    """Skipping a stream (e.g. the held-out SFT draw evaluation never uses) leaves the
    other streams as they are."""
    from sjjax.data.sources import read_sources
    spec = [dict(format="synthetic", seed=3, n_sft=30, n_pairs=12, n_prompts=8,
                 families=["compare", "sort"], levels=[1, 2])]
    every = read_sources(spec, split="heldout")
    some = read_sources(spec, split="heldout", wanted=("prompts", "judgments"))
    assert some.conversations == [] and len(every.conversations) == 4 * 30
    assert [p.messages for p in some.prompts] == [p.messages for p in every.prompts]
    assert ([(j.context, j.chosen, j.rejected) for j in some.judgments]
            == [(j.context, j.chosen, j.rejected) for j in every.judgments])
