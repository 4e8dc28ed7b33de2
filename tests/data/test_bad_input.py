"""Bad input fails loudly, naming the file and line (and field) or the config key; with
on_bad_record="skip" it is skipped and counted, never silently."""

from __future__ import annotations

import json

import pytest

from sjjax.data import readers
from sjjax.data.templates import (TemplateError, default_judge_templates, resolve_judge_tokens,
                                  validate_judge_templates)
from sjjax.errors import DataError
from tests.data.conftest import write_lines

GOOD_HH = json.dumps({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.",
                      "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."})


@pytest.mark.parametrize("bad_line, reason, message", [
    ('{"chosen": "\\n\\nHuman: Hi\\n\\nAssistant: Hello.", "rejected": ',
     "malformed_json", r":2: malformed JSON \(Expecting value, column 61\)"),
    (json.dumps({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello."}),
     "missing_field", r":2: missing field 'rejected'"),
    (json.dumps({"chosen": "\n\nHuman: Hi\n\nAssistant:  \n",
                 "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}),
     "empty_response", r":2: field 'chosen': empty response"),
    (json.dumps({"chosen": "Hi\n\nAssistant: Hello.",
                 "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}),
     "bad_dialogue", r":2: field 'chosen': the dialogue must start with"),
])
def test_hh_rlhf_bad_line(tmp_path, bad_line, reason, message):
    path = write_lines(tmp_path / "hh.jsonl", [GOOD_HH, bad_line, "", GOOD_HH])
    with pytest.raises(DataError, match=r"hh\.jsonl" + message):
        readers.read_hh_rlhf(path)
    out = readers.read_hh_rlhf(path, on_bad_record="skip")
    stats = out.stats[0]
    assert (stats.records, stats.kept, dict(stats.skipped)) == (3, 2, {reason: 1})
    assert stats.notes["blank_lines"] == 1
    assert len(stats.skip_messages) == 1 and f"{path}:2: " in stats.skip_messages[0]
    assert [j.source for j in out.judgments] == [f"{path}:1", f"{path}:4"]


@pytest.mark.parametrize("record, message", [
    ({"prompt": "Q", "chosen": "A"}, r":1: missing field 'rejected'"),
    ({"prompt": "Q", "chosen": "", "rejected": "B"}, r":1: field 'chosen': empty response"),
    ({"prompt": "Q", "chosen": [{"role": "assistant", "content": "A"}],
      "rejected": [{"role": "assistant"}]}, r":1: field rejected\[0\]\.content"),
    ({"prompt": "Q", "chosen": "A", "rejected": "B", "rationale_chosen": 3},
     r":1: field 'rationale_chosen': expected str"),
    ({"chosen": "A", "rejected": "B"}, r":1: missing field 'prompt'"),
    ({"chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
      "rejected": [{"role": "user", "content": "R"}, {"role": "assistant", "content": "B"}]},
     r":1: chosen and rejected do not share the same prompt; first difference at turn 1"),
])
def test_preference_jsonl_bad_record(tmp_path, record, message):
    path = write_lines(tmp_path / "pref.jsonl", [json.dumps(record)])
    with pytest.raises(DataError, match=r"pref\.jsonl" + message):
        readers.read_preference_jsonl(path)
    out = readers.read_preference_jsonl(path, on_bad_record="skip")
    assert out.judgments == [] and out.stats[0].num_skipped == 1


def _uf(ratings, response="Fine."):
    return {"response": response, "annotations": {
        p: {"Rating": r, "Rationale": "x"} for p, r in zip(readers.UF_PRINCIPLES, ratings)}}


@pytest.mark.parametrize("record, message", [
    ({"instruction": "Q", "completions": [_uf(["1", "2", "3", "4"]),
                                          _uf(["1", "7", "3", "4"])]},
     r":1: field 'completions\[1\]\.annotations\.honesty\.Rating': rating '7' is not 1\.\.5"),
    ({"instruction": "Q", "completions": [_uf(["1", "2", "3", "4"], response="")]},
     r":1: field 'completions\[0\]\.response': empty response"),
    ({"instruction": "Q", "completions": [{"response": "A", "annotations": {}}]},
     r":1: missing field 'completions\[0\]\.annotations\.helpfulness'"),
    ({"completions": []}, r":1: missing field 'instruction'"),
])
def test_ultrafeedback_bad_record(tmp_path, record, message):
    path = write_lines(tmp_path / "uf.jsonl", [json.dumps(record)])
    with pytest.raises(DataError, match=r"uf\.jsonl" + message):
        readers.read_ultrafeedback(path)
    assert readers.read_ultrafeedback(path, on_bad_record="skip").stats[0].num_skipped == 1


def test_alpaca_eval_bad_items(tmp_path):
    path = tmp_path / "ae.json"
    path.write_text('[\n  {"instruction": "Q1", "output": "A1"},\n  {"output": "A2"},\n'
                    '  {"instruction": "Q3", "output": "A3"}\n]\n')
    with pytest.raises(DataError, match=r"ae\.json:3: missing field 'instruction'"):
        readers.read_alpaca_eval(str(path))
    out = readers.read_alpaca_eval(str(path), on_bad_record="skip")
    assert [e.instruction for e in out.eval_items] == ["Q1", "Q3"]
    assert out.eval_items[1].source == f"{path}:4"
    path.write_text('[\n  {"instruction": "Q1", "output": "A1"}\n  {"instruction": "Q2"}]')
    with pytest.raises(DataError, match=r"ae\.json:3: malformed JSON \(expected ',' or ']'\)"):
        readers.read_alpaca_eval(str(path))


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match=r"absent\.jsonl: file not found"):
        readers.read_hh_rlhf(str(tmp_path / "absent.jsonl"))


def test_judge_template_without_response_b():
    templates = default_judge_templates()
    templates["helpfulness"]["user"] = templates["helpfulness"]["user"].replace(
        "{response_b}", "")
    with pytest.raises(TemplateError, match=r"config\.judge\.templates\.helpfulness\.user: "
                                            r"principle 'helpfulness' needs \{response_b\} "
                                            r"exactly once \(found 0\)"):
        validate_judge_templates(templates, ("helpfulness",))


def test_judge_token_of_two_tokens(tokenizer):
    with pytest.raises(TemplateError, match=r"config\.judge\.tokens: ' Answer-A' is not a "
                                            r"single token; it tokenizes to 3 tokens"):
        resolve_judge_tokens(tokenizer, (" Answer-A", " B"))


def test_binary_file_names_the_line(tmp_path):
    path = tmp_path / "hh.jsonl"
    path.write_bytes(GOOD_HH.encode() + b"\n" + b"\x1f\x8b\x08\x00\xff\xfe binary\n")
    with pytest.raises(DataError, match=r"hh\.jsonl:2: not UTF-8 text .*gzip files must end "
                                        r"in \.gz"):
        readers.read_hh_rlhf(str(path))


def test_corrupt_gzip_names_the_file(tmp_path):
    import gzip
    path = tmp_path / "hh.jsonl.gz"
    data = gzip.compress(("\n".join([GOOD_HH] * 200) + "\n").encode())
    path.write_bytes(data[:len(data) // 2])  # a cut-off download
    with pytest.raises(DataError, match=r"hh\.jsonl\.gz:\d+: cannot be read .*truncated or "
                                        r"corrupt"):
        readers.read_hh_rlhf(str(path))


def test_every_user_error_class_is_an_sjjax_error():
    """`python -m sjjax.main` prints these as one line (exit 2): they all derive from
    SjjaxError, and keep the built-in base they had (ValueError, FileNotFoundError)."""
    from sjjax.checkpoint import FinalMissingError
    from sjjax.errors import InputNotFoundError, ModelFileError, RunDirError, SjjaxError
    from sjjax.model.config import UnsupportedArchitectureError
    from sjjax.model.gguf_io import GGUFFormatError
    from sjjax.model.hf_io import CheckpointMismatchError
    from sjjax.model.tokenizer import UnsupportedTokenizerError
    for cls in (DataError, TemplateError, UnsupportedArchitectureError, GGUFFormatError,
                CheckpointMismatchError, UnsupportedTokenizerError, ModelFileError,
                RunDirError):
        assert issubclass(cls, SjjaxError) and issubclass(cls, ValueError), cls
    for cls in (InputNotFoundError, FinalMissingError):
        assert issubclass(cls, SjjaxError) and issubclass(cls, FileNotFoundError), cls
