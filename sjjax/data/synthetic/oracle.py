"""The oracle: whether a free-form response gives a task's right answer.

The oracle `score(meta, response)` parses free-form answers (rules in order, the
first that yields a value decides; a response with no value scores 0):

1. Explicit answer: the last "answer is X" / "answer: X" / "answer = X" (also "the
   final answer would be X"). Markdown `*`, `$`, `\\boxed{}` are ignored.
2. A statement. compare and minmax first look for the asked quantity: the last
   "larger/bigger/greater/higher (or smaller/lesser/lower; largest..., smallest...)
   ... is X" within a sentence. Then any: the last "is X", "are X", "= X",
   "equals X", "gives (you) X", "get(s) X", "results in X", "makes X", "was X"
   (count also: "appears X (times)", "X times").
3. compare only: "X is (the) larger/bigger/greater/higher/smaller/less/lower...":
   X if the adjective is the asked direction, else the other candidate; every
   such statement must agree.
4. The only distinct number in the response.

X is a number (count: also zero..twenty, once, twice, thrice) for the number
families, yes/no for membership, a list of numbers separated by commas / "and" /
spaces (brackets allowed; numbered or bulleted lines are read as a list) for sort.
A value followed by another value of the same kind, joined by ",", "/", "and", or
by "or"/"to" (after an optional comma and hedge: "85, or maybe 86"), is ambiguous
and scores 0 ("47 or 52", "yes or no", "2, 5 or 5, 2"), so a response that lists
both candidates is never rewarded; so does a compare response whose statements
(rule 2) name both candidates. Membership, after rule 1, reads a leading "Yes"/"No"
and, failing that, any negation ("not", "n't", "absent", "missing": no) before
"is (indeed) in / is one of / contains / appears / yes" (yes). Numbers are read
without a sign ("-4" reads as 4; no answer in the suite is negative); 85.5 is not
85. A sort answer is right only if it is exactly the sorted list.
"""

from __future__ import annotations

import re
from typing import Sequence

from sjjax.data.records import Prompt


_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update(once=1, twice=2, thrice=3)
_NUM = r"(?<![\w.])\d+(?:\.\d+)?(?![\d])"
_WORD_NUM = r"\b(?:" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")\b"
_YESNO = r"\b(?:yes|no)\b"
_SEP = r"(?:\s*,\s*(?:and\s+)?|\s*;\s*|\s+and\s+|\s+)"
# After a value, another value joined by "," "/" "and" directly, or by "or"/"to" (maybe
# after a comma and a hedge: "85, or maybe 86") makes the answer ambiguous.
_AMBIGUOUS_AFTER = (r"(?:\s*(?:,|/|\band\b)\s*|\s*[,/]?\s*\b(?:or|to)\b\s*"
                    r"(?:(?:maybe|perhaps|possibly|even|rather)\s+)?)")
_MARKER = r"answer\s*(?:would be|will be|should be|is|:|=)\s*:?\s*"
_STATEMENT = (r"(?:\bis|\bare|\bwas|=|\bequals|\bgives(?: you| us)?|\bgets?|\bresults in"
              r"|\bmakes)\s*:?\s*")
_COMPARATIVES = {"larger": "larger", "bigger": "larger", "greater": "larger",
                 "higher": "larger", "largest": "larger", "biggest": "larger",
                 "greatest": "larger", "highest": "larger",
                 "smaller": "smaller", "less": "smaller", "lower": "smaller",
                 "lesser": "smaller", "smallest": "smaller", "lowest": "smaller",
                 "least": "smaller"}


def _clean(response: str) -> str:
    text = re.sub(r"\\boxed\{([^}]*)\}", r"\1", response)
    text = re.sub(r"[*$`]", "", text)
    return text.lower()


def _value_pattern(family: str) -> str:
    if family == "membership":
        return _YESNO
    if family == "count":
        return f"(?:{_NUM}|{_WORD_NUM})"
    if family == "sort":
        return rf"\[?\s*{_NUM}(?:{_SEP}{_NUM})*\s*\]?"
    return _NUM


def _parse(family: str, value: str):
    if family == "membership":
        return value
    if family == "sort":
        return tuple(float(x) for x in re.findall(_NUM, value))
    if value in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[value])
    return float(value)


def _value_at(text: str, pos: int, family: str):
    """The value starting at text[pos:], or None; ('ambiguous',) if another value
    of the same kind follows it after or / and / , / /."""
    vp = _value_pattern(family)
    m = re.match(r"\s*(" + vp + ")", text[pos:])
    if not m:
        return None
    end = pos + m.end()
    if family == "sort":
        if re.match(r"\s*(?:\bor\b|/)", text[end:]):
            return ("ambiguous",)
        return _parse(family, m.group(1))
    if re.match(_AMBIGUOUS_AFTER + "(?:" + vp + ")", text[end:]):
        return ("ambiguous",)
    return _parse(family, m.group(1))


def _values_after(text: str, pattern: str, family: str) -> list:
    """Every value that directly follows a match of `pattern` (in order)."""
    values = []
    for m in re.finditer(pattern, text):
        value = _value_at(text, m.end(), family)
        if value is not None:
            values.append(value)
    return values


def _last_value_after(text: str, pattern: str, family: str):
    values = _values_after(text, pattern, family)
    return values[-1] if values else None


def _bullets_to_list(text: str) -> str:
    """Two or more consecutive numbered / bulleted lines holding one number each ->
    one line "a, b, c."."""
    out, run = [], []
    for line in text.split("\n") + [None]:
        m = re.fullmatch(r"\s*(?:\d+[.)]|[-•])\s+(\d+)\s*[.,]?\s*", line or "")
        if line is not None and m:
            run.append((line, m.group(1)))
            continue
        if len(run) >= 2:
            out.append(", ".join(v for _, v in run) + ".")
        else:
            out += [original for original, _ in run]
        run = []
        if line is not None:
            out.append(line)
    return "\n".join(out)


_DIRECTED = {"larger": "larger|bigger|greater|higher", "smaller": "smaller|lesser|lower",
             "largest": "largest|biggest|greatest|highest|maximum",
             "smallest": "smallest|lowest|least|minimum"}


def extract_answer(meta: dict, response: str):
    """The answer the response gives (float, 'yes'/'no', or a tuple of floats for
    sort), or None if it gives none or an ambiguous one. Rules: module docstring."""
    family = meta["family"]
    text = _clean(response)
    if family == "sort":
        text = _bullets_to_list(text)
    # 1. explicit answer
    value = _last_value_after(text, _MARKER, family)
    if value is None and family == "membership":
        value = _membership_fallback(text)
    # 2. statements: the asked quantity first ("the larger number is X"), then any.
    if value is None and family in ("compare", "minmax"):
        directed = rf"\b(?:{_DIRECTED[meta['ask']]})\b[^.\n]{{0,40}}?(?:\bis|=|\bwould be|\bwas)\s*"
        value = _last_value_after(text, directed, family)
    if value is None:
        pattern = _STATEMENT
        if family == "count":
            pattern = rf"(?:{_STATEMENT}|\b(?:appears|occurs|occurring|appearing)\s+)"
        values = _values_after(text, pattern, family)
        if family == "compare" and {float(x) for x in meta["numbers"]} <= set(values):
            values = [("ambiguous",)]  # "the larger is 23. the smaller is 61."
        value = values[-1] if values else None
        if value is None and family == "count":
            m = list(re.finditer(rf"({_NUM}|{_WORD_NUM})\s+times?\b", text))
            value = _parse(family, m[-1].group(1)) if m else None
    # 3. "X is larger"
    if value is None and family == "compare":
        value = _comparative(text, meta)
    # 4. the only value
    if value is None and family == "sort":
        runs = [m.group(0) for m in re.finditer(rf"{_NUM}(?:{_SEP}{_NUM})+", text)]
        value = _parse(family, runs[-1]) if runs else None
        if runs and re.search(re.escape(runs[-1]) + r"\s*(?:\bor\b|/)", text):
            value = ("ambiguous",)
    if value is None and family not in ("membership", "sort"):
        numbers = {float(x) for x in re.findall(_NUM, text)}
        value = numbers.pop() if len(numbers) == 1 else None
    if value == ("ambiguous",):
        return None
    return value


def _membership_fallback(text: str):
    lead = re.match(r"\W*(yes|no)\b", text)
    if lead:
        if re.match(r"\W*(?:yes|no)\s*(?:,|/|\bor\b)\s*(?:yes|no)\b", text):
            return ("ambiguous",)
        return lead.group(1)
    negative = re.search(r"\bnot\b|n't\b|\babsent\b|\bmissing\b", text)
    positive = re.search(r"\bis\s+(?:\w+\s+)?(?:in|one of|present|included)\b|\bcontains?\b"
                         r"|\bappears\b|\byes\b", text)
    if negative:
        return "no"
    if positive:
        return "yes"
    return None


def _comparative(text: str, meta: dict):
    candidates = [float(x) for x in meta["numbers"]]
    adjectives = "|".join(_COMPARATIVES)
    answers = set()
    for m in re.finditer(rf"({_NUM})\s+is\s+(?:the\s+)?(?:number\s+)?({adjectives})\b", text):
        x, direction = float(m.group(1)), _COMPARATIVES[m.group(2)]
        if x not in candidates:
            continue
        if direction == meta["ask"]:
            answers.add(x)
        else:
            answers.add(candidates[1] if x == candidates[0] else candidates[0])
    return answers.pop() if len(answers) == 1 else None


def _truth(meta: dict):
    family = meta["family"]
    if family == "membership":
        return meta["answer"]
    if family == "sort":
        return tuple(float(x) for x in meta["answer"].split(", "))
    return float(meta["answer"])


def score(meta: dict, response: str) -> float:
    """1.0 if the response gives the right answer, else 0.0 (rules: module docstring)."""
    return 1.0 if extract_answer(meta, response) == _truth(meta) else 0.0


def accuracy(prompts_: Sequence[Prompt], responses: Sequence[str]) -> float:
    if len(prompts_) != len(responses) or not prompts_:
        raise ValueError(f"{len(prompts_)} prompts, {len(responses)} responses")
    return sum(score(p.meta, r) for p, r in zip(prompts_, responses)) / len(prompts_)

