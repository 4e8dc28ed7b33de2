"""Readers: the real HH-RLHF and AlpacaEval files, and hand-written UltraFeedback and
TRL preference fixtures."""

from __future__ import annotations

import json

import pytest

from sjjax.data import readers
from sjjax.data.records import Judgment
from sjjax.errors import ConfigError, DataError
from tests.data.conftest import write_lines

HH_TEST = "hh-rlhf/harmless-base-test.jsonl.gz"
DAVINCI = "alpaca_eval/text_davinci_003_outputs.json"
GPT4 = "alpaca_eval/gpt4_1106_preview_outputs.json"


# --------------------------------------------------------------------------
# HH-RLHF
# --------------------------------------------------------------------------

def test_hh_rlhf_real_file_accounts_for_every_line(shared_data):
    out = readers.read_hh_rlhf(str(shared_data / HH_TEST), on_bad_record="skip")
    stats = out.stats[0]
    # Inspected by hand: lines 87, 517, 926, 1104 have an empty chosen response; in lines
    # 1255, 1689, 1951, 1953, 2037 the chosen dialogue has extra or merged turns, so its
    # context differs from the rejected one.
    assert stats.records == 2312
    assert stats.kept == 2303
    assert dict(stats.skipped) == {"empty_response": 4, "context_mismatch": 5}
    assert stats.kept + stats.num_skipped == 2312
    skipped_lines = sorted(int(m.split(":")[1]) for m in stats.skip_messages)
    assert skipped_lines == [87, 517, 926, 1104, 1255, 1689, 1951, 1953, 2037]
    assert len(out.conversations) == len(out.judgments) == len(out.prompts) == 2303
    lines = {int(j.source.rsplit(":", 1)[1]) for j in out.judgments}
    assert lines == set(range(1, 2313)) - set(skipped_lines)


def test_hh_rlhf_real_file_raises_on_first_bad_line(shared_data):
    with pytest.raises(DataError, match=r"harmless-base-test\.jsonl\.gz:87: field 'chosen': "
                                        r"empty response"):
        readers.read_hh_rlhf(str(shared_data / HH_TEST))


def test_hh_rlhf_context_mismatch_names_line_and_turn(shared_data):
    out = readers.read_hh_rlhf(str(shared_data / HH_TEST), on_bad_record="skip")
    message = next(m for m in out.stats[0].skip_messages if ":1255:" in m)
    # chosen: H A H A A (an inline "Human:" merged two turns); rejected: H A H A
    assert "do not share the same context" in message
    assert "turn 4: chosen 'Assistant: No. Men who impersonate" in message
    assert "vs rejected '(none)'" in message or "rejected (none)" in message


def test_hh_rlhf_parse_multi_turn(tmp_path):
    dialogue = ("\n\nHuman: Hi there\n\nAssistant: Hello!  \n\nHuman: What is 2+2?"
                "\n\nAssistant: ")
    path = write_lines(tmp_path / "hh.jsonl", [json.dumps(
        {"chosen": dialogue + "It is 4.", "rejected": dialogue + "It is 5."})])
    out = readers.read_hh_rlhf(path)
    context = ({"role": "user", "content": "Hi there"},
               {"role": "assistant", "content": "Hello!"},
               {"role": "user", "content": "What is 2+2?"})
    assert out.conversations[0].messages == context + (
        {"role": "assistant", "content": "It is 4."},)
    j = out.judgments[0]
    assert (j.context, j.chosen, j.rejected) == (
        "User: Hi there\n\nAssistant: Hello!\n\nUser: What is 2+2?", "It is 4.", "It is 5.")
    assert j.messages == context and j.principle == "helpfulness"
    assert j.source == f"{path}:1"
    assert out.prompts[0].messages == context and out.prompts[0].context == j.context


# --------------------------------------------------------------------------
# AlpacaEval
# --------------------------------------------------------------------------

def test_alpaca_eval_real_file(shared_data):
    path = shared_data / DAVINCI
    out = readers.read_alpaca_eval(str(path))
    assert len(out.eval_items) == len(out.prompts) == 805
    assert out.stats[0].kept == 805 and out.stats[0].notes["empty_reference"] == 2
    first = out.eval_items[0]
    assert first.instruction == ("What are the names of some famous actors that started "
                                 "their careers on Broadway?")
    assert first.reference.startswith("Some famous actors that started their careers")
    # item 247 has an empty output; its source names the line where the item starts
    item = out.eval_items[247]
    assert item.instruction == "Make a slide to introduce Cantonese" and item.reference == ""
    line = int(item.source.rsplit(":", 1)[1])
    text = path.read_text().splitlines()
    assert text[line - 1].strip() == "{"
    assert "Make a slide to introduce Cantonese" in "".join(text[line:line + 4])


def test_alpaca_eval_as_preference_pairs(shared_data):
    with pytest.raises(DataError, match=r"text_davinci_003_outputs\.json:\d+ output'?: "
                                        r"empty response"):
        readers.read_alpaca_eval(str(shared_data / GPT4), str(shared_data / DAVINCI))
    out = readers.read_alpaca_eval(str(shared_data / GPT4), str(shared_data / DAVINCI),
                                   on_bad_record="skip")
    assert len(out.judgments) == 803 and dict(out.stats[0].skipped) == {"empty_response": 2}
    j = out.judgments[0]
    assert j.context == ("User: What are the names of some famous actors that started their "
                         "careers on Broadway?")
    assert j.rejected.startswith("Some famous actors that started their careers")
    assert j.chosen.startswith("Several famous actors started their careers on Broadway")
    assert len(out.eval_items) == 803  # a skipped record yields nothing


# --------------------------------------------------------------------------
# UltraFeedback (hand-written fixtures)
# --------------------------------------------------------------------------

PRINCIPLES = ("helpfulness", "honesty", "instruction_following", "truthfulness")


def _completion(response, ratings, rationale=""):
    return {"custom_system_prompt": "", "response": response, "annotations": {
        p: {"Rating": r, "Rationale": f"{rationale}{p} {r}"} for p, r in zip(PRINCIPLES, ratings)}}


UF_RECORD = {"instruction": "Name a color.", "completions": [
    _completion("Red.", ["3", "3", "3", "3"], "c0 "),            # mean 3
    _completion("Blue is a color.", ["5", "4", "N/A", "3"], "c1 "),  # mean 4 (N/A excluded)
    _completion("Green, the color of grass.", ["4", "4", "4", "4"], "c2 "),  # mean 4, longer
    _completion("Hmm.", ["1", "2", "2", "N/A"], "c3 "),           # mean 5/3
    _completion("I don't know.", ["N/A"] * 4),                     # unrated
]}


def test_ultrafeedback_sft_target_and_pair(tmp_path):
    path = write_lines(tmp_path / "uf.jsonl", [json.dumps(UF_RECORD)] * 6)
    out = readers.read_ultrafeedback(path, seed=0)
    # best: c2 (mean 4 ties c1, longer response); strictly lower: c0 and c3
    assert all(c.messages[-1]["content"] == "Green, the color of grass."
               for c in out.conversations)
    assert out.conversations[0].messages[0] == {"role": "user", "content": "Name a color."}
    assert len(out.judgments) == 6
    assert {j.chosen for j in out.judgments} == {"Green, the color of grass."}
    rejected = [j.rejected for j in out.judgments]
    assert set(rejected) <= {"Red.", "Hmm."}
    assert len(set(rejected)) == 2   # drawn per line: both lower ones occur in 6 draws
    assert all(j.principle == "helpfulness" and j.rationale_chosen is None
               for j in out.judgments)
    again = readers.read_ultrafeedback(path, seed=0)
    assert [j.rejected for j in again.judgments] == rejected  # seeded
    assert out.stats[0].notes["unrated_completions"] == 6
    assert out.stats[0].notes["na_ratings"] == 6 * (1 + 1 + 4)


def test_ultrafeedback_principles_mode(tmp_path):
    record = {"instruction": "Name a color.", "completions": [
        _completion("Red.", ["2", "5", "N/A", "3"], "c0 "),           # mean 10/3
        _completion("Blue is a color.", ["5", "4", "4", "3"], "c1 "),  # mean 4: best
    ]}
    path = write_lines(tmp_path / "uf.jsonl", [json.dumps(record)])
    out = readers.read_ultrafeedback(path, mode="principles")
    # helpfulness 5>2: c1 wins; honesty 4<5: c0 wins; instruction_following: N/A;
    # truthfulness 3=3: tie -> no judgment
    got = [(j.principle, j.chosen, j.rejected, j.rationale_chosen, j.rationale_rejected)
           for j in out.judgments]
    assert got == [
        ("helpfulness", "Blue is a color.", "Red.", "c1 helpfulness 5", "c0 helpfulness 2"),
        ("honesty", "Red.", "Blue is a color.", "c0 honesty 5", "c1 honesty 4"),
    ]
    assert out.stats[0].notes["na_principle_pairs"] == 1
    assert out.stats[0].notes["tied_principle_pairs"] == 1


def test_ultrafeedback_no_lower_rated_gives_no_pair(tmp_path):
    record = {"instruction": "Hi", "completions": [_completion("A.", ["4"] * 4),
                                                   _completion("B.", ["4"] * 4)]}
    out = readers.read_ultrafeedback(write_lines(tmp_path / "uf.jsonl",
                                                 [json.dumps(record)]))
    assert out.judgments == [] and len(out.conversations) == 1
    assert out.stats[0].notes["no_pair"] == 1


# --------------------------------------------------------------------------
# TRL preference JSONL
# --------------------------------------------------------------------------

def test_preference_jsonl_formats(tmp_path):
    lines = [
        {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."},
        {"prompt": [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Say hi."}],
         "chosen": [{"role": "assistant", "content": "Hi!"}],
         "rejected": [{"role": "assistant", "content": "No."}],
         "principle": "honesty", "rationale_chosen": "polite", "rationale_rejected": "rude"},
        {"chosen": [{"role": "user", "content": "Say hi."},
                    {"role": "assistant", "content": "Hi!"}],
         "rejected": [{"role": "user", "content": "Say hi."},
                      {"role": "assistant", "content": "No."}]},
    ]
    out = readers.read_preference_jsonl(write_lines(tmp_path / "p.jsonl",
                                                    [json.dumps(x) for x in lines]))
    user = {"role": "user", "content": "Say hi."}
    assert [j.messages for j in out.judgments] == [
        (user,), ({"role": "system", "content": "Be brief."}, user), (user,)]
    assert [j.context for j in out.judgments] == [
        "User: Say hi.", "System: Be brief.\n\nUser: Say hi.", "User: Say hi."]
    assert all((j.chosen, j.rejected) == ("Hi!", "No.") for j in out.judgments)
    second = out.judgments[1]
    assert (second.principle, second.rationale_chosen, second.rationale_rejected) == (
        "honesty", "polite", "rude")
    assert out.conversations[0].messages == (user, {"role": "assistant", "content": "Hi!"})


# --------------------------------------------------------------------------
# Config dispatch
# --------------------------------------------------------------------------

def test_read_source_dispatch_and_errors(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [json.dumps(
        {"prompt": "Q", "chosen": "A", "rejected": "B"})])
    out = readers.read_sources([{"format": "preference_jsonl", "path": path,
                                 "principle": "honesty"}])
    assert out.judgments == [Judgment("User: Q", "A", "B", "honesty", source=f"{path}:1",
                                      messages=({"role": "user", "content": "Q"},))]
    with pytest.raises(ConfigError, match=r"config\.data\.sources\[1\]\.format: 'csv'"):
        readers.read_sources([{"format": "preference_jsonl", "path": path},
                              {"format": "csv", "path": path}])
    with pytest.raises(ConfigError, match=r"config\.data\.sources\[0\]: unknown option"):
        readers.read_source({"format": "hh_rlhf", "path": path, "mode": "pair"})
    with pytest.raises(ConfigError, match=r"config\.data\.sources\[0\]\.path: 'nope.jsonl' "
                                          r"not found"):
        readers.read_source({"format": "hh_rlhf", "path": "nope.jsonl"})
    with pytest.raises(ConfigError, match=r"config\.data\.on_bad_record: 'ignore'"):
        readers.read_hh_rlhf(path, on_bad_record="ignore")
