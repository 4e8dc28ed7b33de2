"""Readers: local data files -> the records of `sjjax.data.records`.

Every reader returns a `Records` bundle (conversations, judgments, prompts, eval
items) and a `ReadStats` that accounts for every record of the file:

    stats.records == stats.kept + sum(stats.skipped.values())

Bad input (a malformed JSON line, a missing field, an empty response, chosen and
rejected with different contexts, ...) raises `DataError` naming the file, the
line and the field. With `on_bad_record="skip"` the record is skipped instead, and
counted by reason in `stats.skipped` (the first messages are kept in
`stats.skip_messages` and logged): never a silent skip.

Formats:
- `read_hh_rlhf`: Anthropic HH-RLHF JSONL (`.jsonl` or `.jsonl.gz`), lines
  `{"chosen": "\\n\\nHuman: ... \\n\\nAssistant: ...", "rejected": ...}`.
- `read_ultrafeedback`: UltraFeedback JSONL (`instruction`, `completions` with
  per-principle `annotations`: `Rating` "1".."5" or "N/A", `Rationale`).
- `read_preference_jsonl`: TRL preference JSONL: `prompt`, `chosen`, `rejected` as
  strings or message lists (conversational), optional `principle`,
  `rationale_chosen`, `rationale_rejected`.
- `read_alpaca_eval`: AlpacaEval JSON lists of `{instruction, output, ...}`; one
  file -> eval items; two files -> also preference pairs (first file's output
  chosen).
- `read_source(spec)`: dispatch on one `config.data.sources` entry.

Source strings are "path:line" (line numbers start at 1; for JSON lists, the line
where the item starts).
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import logging
import os
import re
import zlib
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from sjjax.data.records import (Conversation, EvalItem, Judgment, Prompt, ROLE_NAMES,
                                assistant_turn, render_context, user_turn)
from sjjax.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ON_BAD_RECORD = ("raise", "skip")
UF_PRINCIPLES = ("helpfulness", "honesty", "instruction_following", "truthfulness")
_MAX_SKIP_MESSAGES = 20


# --------------------------------------------------------------------------
# Results and accounting
# --------------------------------------------------------------------------

@dataclasses.dataclass
class ReadStats:
    """What a reader did with one file.

    records: records seen (JSONL lines that are not blank, JSON list items).
    kept: records that produced output. skipped: reason -> count (on_bad_record=skip).
    notes: other counts that are not errors (blank lines, records without a pair...).
    """
    path: str
    records: int = 0
    kept: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    skip_messages: list = dataclasses.field(default_factory=list)
    notes: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def as_dict(self) -> dict:
        return dict(path=self.path, records=self.records, kept=self.kept,
                    skipped=dict(self.skipped), notes=dict(self.notes),
                    skip_messages=list(self.skip_messages))

    def log(self, logger: logging.Logger = log) -> None:
        logger.info("%s: %d records, %d kept, %d skipped %s, notes %s", self.path,
                    self.records, self.kept, self.num_skipped, dict(self.skipped),
                    dict(self.notes))
        for message in self.skip_messages:
            logger.warning("skipped %s", message)


@dataclasses.dataclass
class Records:
    """Everything one source yields. `stats` of several sources are kept in a list."""
    conversations: list = dataclasses.field(default_factory=list)
    judgments: list = dataclasses.field(default_factory=list)
    prompts: list = dataclasses.field(default_factory=list)
    eval_items: list = dataclasses.field(default_factory=list)
    stats: list = dataclasses.field(default_factory=list)

    def extend(self, other: "Records") -> "Records":
        for field in ("conversations", "judgments", "prompts", "eval_items", "stats"):
            getattr(self, field).extend(getattr(other, field))
        return self


class _BadRecord(Exception):
    """Raised inside a record parser; becomes a DataError or a counted skip."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def _check_policy(on_bad_record: str) -> None:
    if on_bad_record not in ON_BAD_RECORD:
        raise ConfigError(f"config.data.on_bad_record: {on_bad_record!r} is not one of "
                          f"{ON_BAD_RECORD}")


def _reject(stats: ReadStats, where: str, bad: _BadRecord, on_bad_record: str) -> None:
    message = f"{where}: {bad.message}"
    if on_bad_record == "raise":
        raise DataError(message + " (set config.data.on_bad_record='skip' to skip and count "
                        "such records)")
    stats.skipped[bad.reason] += 1
    if len(stats.skip_messages) < _MAX_SKIP_MESSAGES:
        stats.skip_messages.append(message)


# --------------------------------------------------------------------------
# File iteration
# --------------------------------------------------------------------------

def _open_text(path: str):
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _not_text(path: str, err: Exception, lineno: int | None = None) -> DataError:
    where = f"{path}:{lineno}" if lineno else path
    if isinstance(err, UnicodeDecodeError):
        return DataError(f"{where}: not UTF-8 text ({err.reason}); is it a compressed or "
                         f"binary file? (gzip files must end in .gz)")
    return DataError(f"{where}: cannot be read ({err}); a truncated or corrupt file?")


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file (gzip if it ends in .gz), decoded line by
    line so that bytes that are not UTF-8 name their line."""
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    lineno = 0
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        try:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise _not_text(path, err, lineno) from None
                yield lineno, line
        except (EOFError, gzip.BadGzipFile, zlib.error) as err:
            raise _not_text(path, err, lineno + 1) from None


def _iter_jsonl(path: str, stats: ReadStats) -> Iterator[tuple[int, Any]]:
    """-> (line number, parsed object or _BadRecord). Blank lines are noted, not records."""
    for lineno, line in _lines(path):
        if not line.strip():
            stats.notes["blank_lines"] += 1
            continue
        stats.records += 1
        try:
            obj = json.loads(line.strip())
        except json.JSONDecodeError as e:
            yield lineno, _BadRecord("malformed_json",
                                     f"malformed JSON ({e.msg}, column {e.colno})")
            continue
        if not isinstance(obj, dict):
            yield lineno, _BadRecord("malformed_json", f"expected a JSON object, got "
                                                       f"{type(obj).__name__}")
            continue
        yield lineno, obj


def _iter_json_list(path: str, stats: ReadStats) -> Iterator[tuple[int, Any]]:
    """Items of a JSON list file with the line each item starts on. A file that is not
    valid JSON is an error for the whole file (no record boundary to skip to)."""
    with _open_text(path) as f:
        try:
            text = f.read()
        except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as err:
            raise _not_text(path, err) from None
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")
    i = ws.match(text, 0).end()
    if text[i:i + 1] != "[":
        raise DataError(f"{path}:{text.count(chr(10), 0, i) + 1}: expected a JSON list")
    i = ws.match(text, i + 1).end()
    line, counted = 1, 0
    while text[i:i + 1] != "]":
        line += text.count("\n", counted, i)
        counted = i
        try:
            obj, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg}, column {e.colno})")
        stats.records += 1
        if isinstance(obj, dict):
            yield line, obj
        else:
            yield line, _BadRecord("malformed_json",
                                   f"expected a JSON object, got {type(obj).__name__}")
        i = ws.match(text, i).end()
        if text[i:i + 1] == ",":
            i = ws.match(text, i + 1).end()
        elif text[i:i + 1] != "]":
            lineno = text.count("\n", 0, i) + 1
            raise DataError(f"{path}:{lineno}: malformed JSON (expected ',' or ']')")


def _read(path: str, items, parse, on_bad_record: str, stats: ReadStats) -> Records:
    out = Records(stats=[stats])
    for lineno, obj in items:
        where = f"{path}:{lineno}"
        try:
            if isinstance(obj, _BadRecord):
                raise obj
            parse(obj, where, lineno, out)
        except _BadRecord as bad:
            _reject(stats, where, bad, on_bad_record)
            continue
        stats.kept += 1
    stats.log()
    return out


# --------------------------------------------------------------------------
# Field access
# --------------------------------------------------------------------------

def _field(obj: Mapping, name: str, types=str, label: str | None = None):
    label = label or name
    if name not in obj or obj[name] is None:
        raise _BadRecord("missing_field", f"missing field {label!r}")
    value = obj[name]
    if not isinstance(value, types):
        expected = (types.__name__ if isinstance(types, type)
                    else " or ".join(t.__name__ for t in types))
        raise _BadRecord("bad_value", f"field {label!r}: expected {expected}, got "
                                      f"{type(value).__name__}")
    return value


def _response(text: str, label: str) -> str:
    if not text.strip():
        raise _BadRecord("empty_response", f"field {label!r}: empty response")
    return text


def _optional_str(obj: Mapping, name: str) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise _BadRecord("bad_value", f"field {name!r}: expected str, got "
                                      f"{type(value).__name__}")
    return value


def _messages(value, label: str) -> tuple[dict, ...]:
    if not isinstance(value, list):
        raise _BadRecord("bad_value", f"field {label!r}: expected a list of messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise _BadRecord("bad_value", f"field {label}[{i}]: expected a message object")
        role = m.get("role")
        if role not in ROLE_NAMES:
            raise _BadRecord("bad_value", f"field {label}[{i}].role: {role!r} is not one of "
                                          f"{sorted(ROLE_NAMES)}")
        content = m.get("content")
        if not isinstance(content, str):
            raise _BadRecord("missing_field" if content is None else "bad_value",
                             f"field {label}[{i}].content: expected a string")
        out.append({"role": role, "content": content})
    return tuple(out)


def _first_difference(a: Sequence[dict], b: Sequence[dict]) -> str:
    for i in range(max(len(a), len(b))):
        ma = a[i] if i < len(a) else None
        mb = b[i] if i < len(b) else None
        if ma != mb:
            def show(m):
                return "(none)" if m is None else repr(
                    f"{ROLE_NAMES[m['role']]}: {m['content']}"[:60])
            return f"turn {i + 1}: chosen {show(ma)} vs rejected {show(mb)}"
    return "identical"


# --------------------------------------------------------------------------
# HH-RLHF
# --------------------------------------------------------------------------

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def parse_hh_dialogue(text: str, label: str = "chosen") -> tuple[dict, ...]:
    """"\\n\\nHuman: a\\n\\nAssistant: b" -> ({user: a}, {assistant: b}); contents are
    stripped of surrounding whitespace. "Human:" inside a turn (not after a blank line)
    stays text."""
    parts = _HH_TURN.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise _BadRecord("bad_dialogue", f"field {label!r}: the dialogue must start with "
                                         f"'\\n\\nHuman:' (starts {text[:30]!r})")
    return tuple({"role": _HH_ROLES[role], "content": content.strip()}
                 for role, content in zip(parts[1::2], parts[2::2]))


def _split_last_response(messages, label: str) -> tuple[tuple[dict, ...], str]:
    if messages[-1]["role"] != "assistant":
        raise _BadRecord("bad_dialogue", f"field {label!r}: the dialogue does not end with an "
                                         f"Assistant turn")
    if len(messages) < 2:
        raise _BadRecord("bad_dialogue", f"field {label!r}: no turn before the response")
    return messages[:-1], _response(messages[-1]["content"], label)


def read_hh_rlhf(path: str, on_bad_record: str = "raise",
                 principle: str = "helpfulness", system: str = "") -> Records:
    """HH-RLHF JSONL -> per line: Conversation (the chosen dialogue), Judgment (context,
    chosen and rejected last turns, with `messages`), Prompt (the turns before the
    response). Chosen and rejected must share the context. `system`: a system message
    put first in the conversation and the prompt (the official code uses its judge
    system text); the judged context never shows it."""
    _check_policy(on_bad_record)
    stats = ReadStats(path)

    def parse(obj, where, lineno, out):
        chosen = parse_hh_dialogue(_field(obj, "chosen"), "chosen")
        rejected = parse_hh_dialogue(_field(obj, "rejected"), "rejected")
        context, chosen_text = _split_last_response(chosen, "chosen")
        rejected_context, rejected_text = _split_last_response(rejected, "rejected")
        if context != rejected_context:
            raise _BadRecord("context_mismatch",
                             "chosen and rejected do not share the same context; first "
                             f"difference at {_first_difference(context, rejected_context)}")
        rendered = render_context(context)
        head = ({"role": "system", "content": system},) if system else ()
        out.conversations.append(Conversation(head + chosen, source=where))
        out.judgments.append(Judgment(rendered, chosen_text, rejected_text, principle,
                                      source=where, messages=context))
        out.prompts.append(Prompt(head + context, rendered, source=where))

    return _read(path, _iter_jsonl(path, stats), parse, on_bad_record, stats)


# --------------------------------------------------------------------------
# UltraFeedback
# --------------------------------------------------------------------------

def _uf_rating(value, label: str) -> int | None:
    """"1".."5" (or an int) -> int; "N/A" -> None; anything else is a bad record."""
    text = str(value).strip()
    if text.upper() == "N/A":
        return None
    if isinstance(value, bool) or text not in ("1", "2", "3", "4", "5"):
        raise _BadRecord("bad_value", f"field {label!r}: rating {value!r} is not 1..5 or "
                                      f"'N/A'")
    return int(text)


def read_ultrafeedback(path: str, on_bad_record: str = "raise", mode: str = "pair",
                       principles: Sequence[str] = UF_PRINCIPLES, seed: int = 0,
                       pair_principle: str = "helpfulness",
                       rationale_field: str | Sequence[str] = "Rationale",
                       system_prompt: bool = False) -> Records:
    """UltraFeedback JSONL -> per record: Conversation (the completion with the highest
    mean rating over `principles`, "N/A" excluded; ties -> the longer response), Prompt,
    and judgments between that best completion and one strictly lower-rated completion
    drawn with `np.random.default_rng([seed, line])` (reproducible, order independent):

    mode="pair": one Judgment under `pair_principle` (JSFT).
    mode="principles" (JM-PR): the same two completions judged per principle: one
      Judgment per principle whose ratings of the two differ (higher rating = chosen),
      with both rationales. A principle with an "N/A" rating of either is skipped.

    Records with no strictly lower-rated completion give no judgment (noted as
    `no_pair`); completions rated "N/A" on every principle are not ranked.

    rationale_field: an annotation field, or several: the first is required, the
    others are appended, space-separated, where present (the official code's
    ("Rationale", "Rationale For Rating")). system_prompt: the best completion's
    `custom_system_prompt` opens its conversation and the prompt (the official SFT
    and self-training queries); the judged context is the instruction alone.
    """
    fields = (rationale_field,) if isinstance(rationale_field, str) else tuple(rationale_field)
    if not fields:
        raise ConfigError("config.data.sources: ultrafeedback rationale_field is empty")
    _check_policy(on_bad_record)
    if mode not in ("pair", "principles"):
        raise ConfigError(f"config.data.sources: ultrafeedback mode {mode!r} is not "
                          f"'pair' or 'principles'")
    stats = ReadStats(path)

    def parse(obj, where, lineno, out):
        instruction = _field(obj, "instruction")
        if not instruction.strip():
            raise _BadRecord("bad_value", "field 'instruction': empty")
        completions = _field(obj, "completions", list)
        rated = []  # (mean, length, -index, index, response, ratings, annotations)
        for i, c in enumerate(completions):
            label = f"completions[{i}]"
            if not isinstance(c, dict):
                raise _BadRecord("bad_value", f"field {label!r}: expected an object")
            response = _response(_field(c, "response", label=f"{label}.response"),
                                 f"{label}.response")
            annotations = _field(c, "annotations", dict, f"{label}.annotations")
            ratings = {}
            for p in principles:
                a = _field(annotations, p, dict, f"{label}.annotations.{p}")
                ratings[p] = _uf_rating(_field(a, "Rating", (str, int),
                                               f"{label}.annotations.{p}.Rating"),
                                        f"{label}.annotations.{p}.Rating")
            numeric = [r for r in ratings.values() if r is not None]
            stats.notes["na_ratings"] += len(ratings) - len(numeric)
            if not numeric:
                stats.notes["unrated_completions"] += 1
                continue
            rated.append((float(np.mean(numeric)), len(response), -i, i, response, ratings,
                          annotations))
        if not rated:
            raise _BadRecord("no_rating", "no completion has a numeric rating")
        best = max(rated)
        messages = (user_turn(instruction),)
        rendered = render_context(messages)
        head = ()
        if system_prompt:
            text = completions[best[3]].get("custom_system_prompt") or ""
            if not isinstance(text, str):
                raise _BadRecord("bad_value", f"field 'completions[{best[3]}]."
                                              f"custom_system_prompt': expected a string")
            head = ({"role": "system", "content": text},) if text else ()
        out.conversations.append(Conversation(head + messages + (assistant_turn(best[4]),),
                                              source=where))
        out.prompts.append(Prompt(head + messages, rendered, source=where))
        lower = [r for r in rated if r[0] < best[0]]
        if not lower:
            stats.notes["no_pair"] += 1
            return
        other = lower[int(np.random.default_rng([seed, lineno]).integers(len(lower)))]
        if mode == "pair":
            out.judgments.append(Judgment(rendered, best[4], other[4], pair_principle,
                                          source=where, messages=messages))
            return
        for p in principles:
            rb, ro = best[5][p], other[5][p]
            if rb is None or ro is None:
                stats.notes["na_principle_pairs"] += 1
                continue
            if rb == ro:
                stats.notes["tied_principle_pairs"] += 1
                continue
            win, lose = (best, other) if rb > ro else (other, best)

            def rationale(c):
                label = f"completions[{c[3]}].annotations.{p}"
                texts = [_field(c[6][p], fields[0], str, f"{label}.{fields[0]}")]
                texts += [_field(c[6][p], f, str, f"{label}.{f}") for f in fields[1:]
                          if f in c[6][p]]
                return " ".join(texts)
            out.judgments.append(Judgment(rendered, win[4], lose[4], p, rationale(win),
                                          rationale(lose), source=f"{where}:{p}",
                                          messages=messages))

    return _read(path, _iter_jsonl(path, stats), parse, on_bad_record, stats)


# --------------------------------------------------------------------------
# TRL preference JSONL
# --------------------------------------------------------------------------

def _completion(value, label: str) -> str:
    """A TRL completion: a string or a list holding one assistant message."""
    if isinstance(value, str):
        return _response(value, label)
    messages = _messages(value, label)
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise _BadRecord("bad_value", f"field {label!r}: a conversational completion must "
                                      f"be a list with one assistant message")
    return _response(messages[0]["content"], label)


def read_preference_jsonl(path: str, on_bad_record: str = "raise",
                          principle: str = "helpfulness") -> Records:
    """TRL preference JSONL -> per line: Judgment (with `messages`), Conversation
    (prompt + chosen), Prompt.

    Standard: {"prompt": str, "chosen": str, "rejected": str}.
    Conversational: {"prompt": [messages], "chosen": [{"role": "assistant", ...}], ...}.
    Implicit prompt (conversational only): {"chosen": [messages], "rejected": [messages]},
    the prompt is everything before the last message and must be the same in both.
    Optional: "principle" (default `principle`), "rationale_chosen", "rationale_rejected".
    """
    _check_policy(on_bad_record)
    stats = ReadStats(path)

    def parse(obj, where, lineno, out):
        if "prompt" in obj and obj["prompt"] is not None:
            prompt = _field(obj, "prompt", (str, list))
            if isinstance(prompt, str):
                if not prompt.strip():
                    raise _BadRecord("bad_value", "field 'prompt': empty")
                context = (user_turn(prompt),)
            else:
                context = _messages(prompt, "prompt")
                if not context:
                    raise _BadRecord("bad_value", "field 'prompt': empty message list")
            chosen = _completion(_field(obj, "chosen", (str, list)), "chosen")
            rejected = _completion(_field(obj, "rejected", (str, list)), "rejected")
        else:
            c, r = _field(obj, "chosen", (str, list)), _field(obj, "rejected", (str, list))
            if isinstance(c, str) or isinstance(r, str):
                raise _BadRecord("missing_field", "missing field 'prompt' (an implicit "
                                                  "prompt needs conversational chosen/rejected)")
            context, chosen = _split_last_response(_messages(c, "chosen"), "chosen")
            rejected_context, rejected = _split_last_response(_messages(r, "rejected"),
                                                              "rejected")
            if context != rejected_context:
                raise _BadRecord("context_mismatch",
                                 "chosen and rejected do not share the same prompt; first "
                                 f"difference at {_first_difference(context, rejected_context)}")
        p = _optional_str(obj, "principle") or principle
        rendered = render_context(context)
        out.judgments.append(Judgment(rendered, chosen, rejected, p,
                                      _optional_str(obj, "rationale_chosen"),
                                      _optional_str(obj, "rationale_rejected"),
                                      source=where, messages=context))
        out.conversations.append(Conversation(context + (assistant_turn(chosen),),
                                              source=where))
        out.prompts.append(Prompt(context, rendered, source=where))

    return _read(path, _iter_jsonl(path, stats), parse, on_bad_record, stats)


# --------------------------------------------------------------------------
# AlpacaEval
# --------------------------------------------------------------------------

def read_alpaca_eval(path: str, rejected_path: str | None = None,
                     on_bad_record: str = "raise", principle: str = "helpfulness") -> Records:
    """AlpacaEval JSON list(s) of {instruction, output, ...}.

    Always: one EvalItem (reference = this file's output) and one Prompt per item. An
    empty reference output is kept (it is what the reference model produced) and noted
    as `empty_reference`.
    With `rejected_path` (e.g. gpt4 outputs as `path`, davinci-003 as `rejected_path`):
    also a Judgment (path's output chosen) and a Conversation (SFT on it) per
    instruction, matched by instruction text; here an empty output is a bad record.
    """
    _check_policy(on_bad_record)
    rejected_by_instruction = None
    if rejected_path is not None:
        rejected_stats = ReadStats(rejected_path)
        rejected_by_instruction = {}
        for lineno, obj in _iter_json_list(rejected_path, rejected_stats):
            if isinstance(obj, _BadRecord) or not isinstance(obj.get("instruction"), str):
                continue  # reported when its partner in `path` looks it up
            rejected_by_instruction.setdefault(obj["instruction"], (lineno, obj))
    stats = ReadStats(path)

    def parse(obj, where, lineno, out):
        instruction = _field(obj, "instruction")
        if not instruction.strip():
            raise _BadRecord("bad_value", "field 'instruction': empty")
        output = _field(obj, "output")
        messages = (user_turn(instruction),)
        rendered = render_context(messages)
        if rejected_by_instruction is not None:
            chosen = _response(output, "output")
            if instruction not in rejected_by_instruction:
                raise _BadRecord("missing_pair", f"instruction not found in {rejected_path} "
                                                 f"({instruction[:50]!r})")
            r_line, r_obj = rejected_by_instruction[instruction]
            rejected = _response(_field(r_obj, "output", label=f"{rejected_path}:{r_line} "
                                                               f"output"),
                                 f"{rejected_path}:{r_line} output")
            out.judgments.append(Judgment(rendered, chosen, rejected, principle,
                                          source=f"{where}|{rejected_path}:{r_line}",
                                          messages=messages))
            out.conversations.append(Conversation(messages + (assistant_turn(chosen),),
                                                  source=where))
        elif not output.strip():
            stats.notes["empty_reference"] += 1
        out.eval_items.append(EvalItem(instruction, output, source=where))
        meta = {k: v for k, v in obj.items() if k in ("dataset", "generator")}
        out.prompts.append(Prompt(messages, rendered, meta=meta, source=where))

    return _read(path, _iter_json_list(path, stats), parse, on_bad_record, stats)


# --------------------------------------------------------------------------
# Config dispatch
# --------------------------------------------------------------------------

READERS = {
    "hh_rlhf": (read_hh_rlhf, {"principle", "system"}),
    "ultrafeedback": (read_ultrafeedback, {"mode", "principles", "seed", "pair_principle",
                                           "rationale_field", "system_prompt"}),
    "preference_jsonl": (read_preference_jsonl, {"principle"}),
    "alpaca_eval": (read_alpaca_eval, {"rejected_path", "principle"}),
}


def read_source(spec: Mapping, on_bad_record: str = "raise", key: str = "data.sources[0]"
                ) -> Records:
    """One `config.data.sources` entry, e.g. {"format": "hh_rlhf", "path": "..."}, plus
    that reader's options -> Records. Errors name the config key."""
    if hasattr(spec, "to_dict"):
        spec = spec.to_dict()
    if not isinstance(spec, Mapping):
        raise ConfigError(f"config.{key}: expected a dict with 'format' and 'path'")
    fmt = spec.get("format")
    if fmt not in READERS:
        raise ConfigError(f"config.{key}.format: {fmt!r} is not one of {sorted(READERS)}")
    reader, options = READERS[fmt]
    unknown = set(spec) - options - {"format", "path"}
    if unknown:
        raise ConfigError(f"config.{key}: unknown option(s) {sorted(unknown)} for format "
                          f"{fmt!r} (allowed: path, {', '.join(sorted(options))})")
    path = spec.get("path")
    if not isinstance(path, str) or not path:
        raise ConfigError(f"config.{key}.path: missing")
    for name in ("path", "rejected_path"):
        if spec.get(name) and not os.path.exists(spec[name]):
            raise ConfigError(f"config.{key}.{name}: {spec[name]!r} not found (relative "
                              f"paths are relative to {os.getcwd()})")
    kwargs = {k: v for k, v in spec.items() if k in options}
    if "principles" in kwargs:
        kwargs["principles"] = tuple(kwargs["principles"])
    if isinstance(kwargs.get("rationale_field"), (list, tuple)):
        kwargs["rationale_field"] = tuple(kwargs["rationale_field"])
    return reader(path, on_bad_record=on_bad_record, **kwargs)


def read_sources(specs: Sequence[Mapping], on_bad_record: str = "raise") -> Records:
    """All `config.data.sources` -> one Records bundle (stats: one per file)."""
    out = Records()
    for i, spec in enumerate(specs):
        out.extend(read_source(spec, on_bad_record, key=f"data.sources[{i}]"))
    return out
