"""Rationales for the judge's target (JM-PR): what checking a response against its
question finds, in a few words, from the oracle's reading of the response.

    explain(meta, "The answer is 83.")  ->  "83 is not in the question."

The judge's decision token comes first and the rationale after it (the paper's JM-PR
order), so the rationale never feeds the verdict at inference; in training it asks the
model, token by token, for the check a question-blind rule skips: is the number in the
question, is it the largest, is every number of the list there and in order
(docs/results.md, "A judge that checks answers").
"""

from __future__ import annotations

import functools

from sjjax.data.synthetic.oracle import extract_answer, score

_MORE = {"larger": "larger", "smaller": "smaller", "largest": "larger",
         "smallest": "smaller"}


def _show(x) -> str:
    """A number as the suite writes it (85.0 -> '85')."""
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def _number_check(value: float, numbers: list, ask: str) -> str:
    right = (max if _MORE[ask] == "larger" else min)(float(x) for x in numbers)
    shown = _show(value)
    if value not in [float(x) for x in numbers]:
        return f"{shown} is not in the question."
    if value == right:
        return f"{shown} is in the question and the {ask}."
    return f"{shown} is in the question, but {_show(right)} is {_MORE[ask]}."


def _list_check(value: tuple, items: list, order: str) -> str:
    items = [float(x) for x in items]
    extra = [x for x in value if x not in items]
    if extra:
        return f"{_show(extra[0])} is not in the question."
    missing = [x for x in items if x not in value]
    if missing:
        return f"{_show(missing[0])} is missing."
    if len(value) != len(items):
        twice = next(x for x in value if value.count(x) > 1)
        return f"{_show(twice)} is there twice."
    if list(value) != sorted(items, reverse=order == "descending"):
        return f"Every number is there, not in {order} order."
    return f"Every number is there, in {order} order."


def explain(meta: dict, response: str, restate: bool | str = False) -> str:
    """A one-sentence check of `response` against the task of `meta` (a synthetic
    prompt's meta): compare and minmax say whether the number is in the question and
    whether it is the asked extreme; sort whether every number is there, once, in
    order; the other families name the right answer.

    restate: compare, minmax and sort first copy the question's numbers ("The question
    has 58, 23, 61, 85, 42. 83 is not in the question."), so that a judge writing the
    check compares the answer with a list it has just written, not with one far back in
    its prompt (a step of reasoning the check makes explicit).

    restate="answer": every family first states the question's answer, then only whether
    the response is it ("The answer is 85. 83 is wrong."). The other checks name the
    right answer after the wrong one ("83 is wrong; the answer is 85."), which in a pair
    with one right response is the other response's number: a judge can write them by
    copying the other response instead of solving (SmolLM2 did: docs/results.md). Here
    the answer comes first, before either response is checked, so a copy would already
    be the verdict."""
    if restate == "answer":
        return f"The answer is {meta['answer']}. {_verdict(meta, response)}"
    text = _check(meta, response)
    numbers = meta.get("numbers") if meta["family"] == "compare" else meta.get("items")
    if restate is True and meta["family"] in ("compare", "minmax", "sort") and numbers:
        return f"The question has {', '.join(_show(x) for x in numbers)}. {text}"
    return text


def explainer(rationales: bool, restate: bool | str = False):
    """The config's rationale options -> explain(meta, response) -> str, or None."""
    if not rationales:
        return None
    return functools.partial(explain, restate=restate) if restate else explain


def _verdict(meta: dict, response: str) -> str:
    """"83 is wrong." / "85 is right." (the response's answer as the suite writes it)."""
    value = extract_answer(meta, response)
    if value is None:
        return "It gives no single answer."
    shown = (", ".join(_show(x) for x in value) if isinstance(value, (tuple, list))
             else _show(value))
    return f"{shown} is {'right' if score(meta, response) else 'wrong'}."


def _check(meta: dict, response: str) -> str:
    family = meta["family"]
    value = extract_answer(meta, response)
    if value is None:
        return "It gives no single answer."
    if family == "compare":
        return _number_check(value, meta["numbers"], meta["ask"])
    if family == "minmax":
        return _number_check(value, meta["items"], meta["ask"])
    if family == "sort":
        return _list_check(value, meta["items"], meta["order"])
    return (f"{_show(value)} is right." if score(meta, response) else
            f"{_show(value)} is wrong; the answer is {meta['answer']}.")
