"""Wrong answers for the suite's rejected responses and wrong demonstrations.

A wrong answer has the format and length of the right one (same number of digits,
same list length) and is of a kind models get wrong: the other candidate, a
carry/borrow error, off by one or ten, adjacent digits swapped, an adjacent swap in a
sort, the wrong direction, a dropped element, the second smallest, a miscount by one
or two. Numeric wrong answers are above the right one as often as below.
"""

from __future__ import annotations

import random

from sjjax.data.synthetic.tasks import comma_join


def _same_shape(value: int, right: int) -> bool:
    return value >= 0 and value != right and len(str(value)) == len(str(right))


def _no_carry(a: int, b: int, op: str) -> int:
    """Digit-wise addition without carries / subtraction with |digit difference|."""
    width = max(len(str(a)), len(str(b)))
    sa, sb = str(a).zfill(width), str(b).zfill(width)
    if op == "+":
        digits = [(int(x) + int(y)) % 10 for x, y in zip(sa, sb)]
    else:
        digits = [abs(int(x) - int(y)) for x, y in zip(sa, sb)]
    return int("".join(map(str, digits)))


def _swap_adjacent_digits(value: int, rng) -> int:
    s = str(value)
    spots = [i for i in range(len(s) - 1) if s[i] != s[i + 1] and (i or s[i + 1] != "0")]
    if not spots:
        return value
    i = rng.choice(spots)
    return int(s[:i] + s[i + 1] + s[i] + s[i + 2:])


def _pick_numeric(candidates: dict[str, int], right: int, rng) -> tuple[str, str]:
    """Keeps the candidates of the right shape, picks above/below 50/50 (when both
    exist), then a kind uniformly."""
    ok = {k: v for k, v in candidates.items() if _same_shape(v, right)}
    if not ok:
        raise RuntimeError(f"no wrong answer of the same shape as {right}")
    above = {k: v for k, v in ok.items() if v > right}
    below = {k: v for k, v in ok.items() if v < right}
    side = above if (above and (not below or rng.random() < 0.5)) else below
    kind = rng.choice(sorted(side))
    return str(side[kind]), kind


def wrong_answer(meta: dict, rng: random.Random) -> tuple[str, str]:
    """-> (wrong answer text, kind): plausible, same format and length as the right one,
    and wrong by `score`."""
    family, right = meta["family"], meta["answer"]
    if family == "compare":
        x, y = meta["numbers"]
        return str(y if str(x) == right else x), "other_candidate"
    if family == "membership":
        return ("no" if right == "yes" else "yes"), "flipped"
    if family == "arithmetic":
        r, a, b, op = int(right), meta["a"], meta["b"], meta["op"]
        candidates = {"off_by_one+": r + 1, "off_by_one-": r - 1, "off_by_ten+": r + 10,
                      "off_by_ten-": r - 10, "carry": _no_carry(a, b, op),
                      "digit_swap": _swap_adjacent_digits(r, rng)}
        return _pick_numeric(candidates, r, rng)
    if family == "count":
        r = int(right)
        return _pick_numeric({"miscount+1": r + 1, "miscount-1": r - 1, "miscount+2": r + 2,
                              "miscount-2": r - 2}, r, rng)
    if family == "minmax":
        items, r = meta["items"], int(right)
        ordered = sorted(items, reverse=meta["ask"] == "largest")
        candidates = {"other_extreme": ordered[-1], "second": ordered[1],
                      "first_item": items[0], "last_item": items[-1]}
        candidates = {k: v for k, v in candidates.items() if v != r}
        kind = rng.choice(sorted(candidates))
        return str(candidates[kind]), kind
    if family == "sort":
        items, order = meta["items"], meta["order"]
        target = sorted(items, reverse=order == "descending")
        n = len(target)
        candidates = {}
        i = rng.randrange(n - 1)
        swapped = list(target)
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
        candidates["adjacent_swap"] = swapped
        moved = list(target)
        j = rng.randrange(n)
        value = moved.pop(j)
        moved.insert(rng.choice([k for k in range(n) if k != j]), value)
        candidates["moved_element"] = moved
        candidates["wrong_direction"] = target[::-1]
        candidates["unsorted_input"] = list(items)
        dropped = list(target)
        k = rng.randrange(n - 1)
        dropped[k + 1] = dropped[k]  # an element dropped, its neighbour doubled
        candidates["dropped_element"] = dropped
        candidates = {k: v for k, v in candidates.items() if v != target}
        kind = rng.choice(sorted(candidates))
        return comma_join(candidates[kind]), kind
    raise ValueError(f"unknown family {family!r}")



# ------------------------------------------------------------------ shortcut-proof negatives
# Candidate wrong answers of every kind, from which `records.shortcut_proof_pairs` picks
# one per task so that no question-blind rule (sjjax.evaluation.shortcuts) beats chance:
# numbers above and below the right one, inside and outside the question, the policy's own
# errors (off by one or ten: numbers absent from the question), hedges that name the right
# answer and another ("85 or 61": the oracle scores them wrong), sorted-looking wrong lists
# (an element replaced by an absent neighbour, dropped, doubled, or an absent one inserted).

def _numeric_candidates(right: int, inside: list[int]) -> dict[str, str]:
    out = {}
    for d in (1, 2, 10):
        for sign, name in ((1, "+"), (-1, "-")):
            v = right + sign * d
            if v >= 0 and v not in inside:
                out[f"absent_{name}{d}"] = str(v)
    swapped = int(str(right)[::-1])
    if swapped != right and swapped not in inside and len(str(swapped)) == len(str(right)):
        out["absent_digit_swap"] = str(swapped)
    for v in sorted(set(inside) - {right}):
        out[f"inside_{'above' if v > right else 'below'}_{v}"] = str(v)
    others = sorted(set(inside) - {right}) or [int(v) for k, v in out.items()][:2]
    for v in others[:3]:
        out[f"hedge_right_first_{v}"] = f"{right} or {v}"
        out[f"hedge_right_last_{v}"] = f"{v} or {right}"
    return out


def _list_candidates(items: list[int], target: list[int], rng) -> dict[str, str]:
    n, out = len(target), {}
    asc = target == sorted(target)
    for i in range(n - 1):
        s = list(target)
        s[i], s[i + 1] = s[i + 1], s[i]
        out[f"adjacent_swap_{i}"] = s
    out["wrong_direction"] = target[::-1]
    out["unsorted_input"] = list(items)
    for i in range(n):
        out[f"dropped_{i}"] = target[:i] + target[i + 1:]
        out[f"doubled_{i}"] = target[:i + 1] + target[i:]
        for d in (1, -1, 10, -10):
            v = target[i] + d
            if v < 0 or v in items:
                continue
            replaced = target[:i] + [v] + target[i + 1:]
            if replaced == sorted(replaced, reverse=not asc):
                out[f"replaced_{i}_{d:+d}"] = replaced
            inserted = sorted(target + [v], reverse=not asc)
            out[f"inserted_{i}_{d:+d}"] = inserted
    moved = list(target)
    j = rng.randrange(n)
    moved.insert(rng.choice([k for k in range(n) if k != j]), moved.pop(j))
    out["moved_element"] = moved
    return {k: comma_join(v) for k, v in out.items() if v != target}


def wrong_candidates(meta: dict, rng: random.Random) -> dict[str, str]:
    """kind -> wrong answer text (in the demonstration's answer slot), every kind this
    family has; the caller keeps those the oracle scores wrong."""
    family, right = meta["family"], meta["answer"]
    if family == "membership":
        other = "no" if right == "yes" else "yes"
        return {"flipped": other, "hedge_right_first": f"{right} or {other}",
                "hedge_right_last": f"{other} or {right}"}
    if family == "sort":
        target = [int(x) for x in right.split(", ")]
        return _list_candidates(list(meta["items"]), target, rng)
    r = int(right)
    if family == "compare":
        inside = list(meta["numbers"])
    elif family == "minmax":
        inside = list(meta["items"])
    elif family == "arithmetic":
        inside = [meta["a"], meta["b"]]
        carry = _no_carry(meta["a"], meta["b"], meta["op"])
        out = _numeric_candidates(r, inside)
        if carry != r:
            out["carry"] = str(carry)
        return out
    elif family == "count":
        inside = []
    else:
        raise ValueError(f"unknown family {family!r}")
    return _numeric_candidates(r, inside)
