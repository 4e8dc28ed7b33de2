"""A verifiable synthetic task suite: natural-language instructions whose answers a
program checks, so Self-Judge can be measured without a human or GPT-4 evaluator.

Families (each at levels 1, 2, 3; see `LEVELS` for the parameters):

    compare     Which number is larger/smaller, a or b?        "The answer is 52."
    arithmetic  What is a + b / a - b?                          "The answer is 127."
    membership  Is q in the list ...?                           "The answer is yes."
    sort        Sort the numbers ... from smallest to largest.  "The answer is 3, 5, 9, 12."
    minmax      What is the smallest/largest of these numbers?  "The answer is 8."
    count       How many times does the word w appear in ...?   "The answer is 3."

Levels (`LEVELS`):

    compare     1: two 1-digit numbers   2: two 2-digit numbers   3: two 3-digit numbers
                   with the same first digit
    arithmetic  1: 1-digit +/- 1-digit   2: 2-digit +/- 1-digit   3: 2-digit +/- 2-digit
                   (a - b with a >= b: answers are never negative)
    membership  list of 3 / 5 / 8 two-digit numbers; at levels 2-3 an absent query is a
                near miss of a listed number (digits reversed, off by one)
    sort        3 one-digit / 4 two-digit / 6 two-digit numbers, ascending or descending
    minmax      smallest or largest of 3 / 5 / 8 two-digit numbers
    count       occurrences of a word in a list of 5 / 8 / 12 animal names; the count is
                uniform over 1-3 / 1-4 / 1-6

Greedy accuracy of SmolLM2-135M-Instruct (the Q4_1 GGUF, sjjax sampler, 48 new
tokens, 48 held-out prompts per cell; `bench/synthetic_difficulty.py`):

                L1    L2    L3
    compare     0.56  0.62  0.46   (mostly picks the second number: chance)
    arithmetic  0.40  0.00  0.04
    membership  0.38  0.46  0.42   (mostly answers "no")
    sort        0.04  0.00  0.00   (echoes the input or gives one number)
    minmax      0.52  0.35  0.35
    count       0.23  0.23  0.08   (mostly answers 1)

Every prompt ends with the same format instruction ('Reply with "The answer is"
followed by ...'), and every demonstration uses that format. Answers are balanced
so that no prior wins: yes/no 50/50, the right number first or second 50/50,
larger/smaller and ascending/descending 50/50, the position of the extreme
uniform, counts uniform over the level's range, and a wrong answer is above the
right one as often as below.

Records (see records.py):
- `sft_conversations`: SFT `Conversation`s, a chosen fraction of them with a WRONG
  demonstration (so SFT alone is imperfect).
- `labelled_pairs` / `judgments`: (context, chosen = right, rejected = plausible
  wrong). The wrong answer has the format and length of the right one (same
  number of digits, same list length) and is of a kind models get wrong: the other
  candidate, a carry/borrow error, off by one or ten, adjacent digits swapped, an
  adjacent swap in a sort, the wrong direction, a dropped element, the second
  smallest, a miscount by one or two.
- `Task.prompt()`: held-out `Prompt`s whose `meta` carries what `score` needs.
- `pairs_from_samples`: Judgment records from a model's own two samples per prompt,
  labelled by the oracle (only pairs with exactly one correct response).

Train/held-out split: an instance's split is a fixed function of its content (a
hash of family, level and parameters; the wording variant is not part of it), so
it does not depend on the seed or the counts asked for. 10% of each cell's
instance space is held out (25% for the small compare and arithmetic level-1
cells). Held-out instances are distinct while the cell's held-out space allows;
training instances may repeat.

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

    python -m sjjax.data.synthetic --out DIR --seed 0 [--n-sft 200 --n-pairs 200
        --n-heldout 32 --wrong-fraction 0.2 --families compare,sort --levels 1,2]

writes DIR/sft.jsonl ({"messages", "source"}), DIR/pairs.jsonl (TRL style
{"prompt", "chosen", "rejected"} message lists: what your own preference data
should look like) and DIR/prompts.jsonl ({"messages", "context", "meta", "source"}).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import re
import sys
from typing import Callable, Iterable, Sequence

from sjjax.data.records import (Conversation, Judgment, Messages, Prompt, assistant_turn,
                                render_context, user_turn)

SPLIT_SALT = "sjjax-synthetic-v1"
HELDOUT_PERMILLE = 100  # 10% of every cell's instance space is held out, forever...
# ...except the small cells (~130 instances), where 25% is.
HELDOUT_PERMILLE_CELL = {("compare", 1): 250, ("arithmetic", 1): 250}

FAMILIES = ("compare", "arithmetic", "membership", "sort", "minmax", "count")

# Per family and level, the generator's parameters.
LEVELS = {
    "compare": {1: dict(digits=1, shared=0), 2: dict(digits=2, shared=0),
                3: dict(digits=3, shared=1)},
    "arithmetic": {1: dict(digits=(1, 1)), 2: dict(digits=(2, 1)), 3: dict(digits=(2, 2))},
    "membership": {1: dict(length=3, near=False), 2: dict(length=5, near=True),
                   3: dict(length=8, near=True)},
    "sort": {1: dict(length=3, digits=1), 2: dict(length=4, digits=2),
             3: dict(length=6, digits=2)},
    "minmax": {1: dict(length=3), 2: dict(length=5), 3: dict(length=8)},
    "count": {1: dict(length=5, counts=(1, 2, 3)), 2: dict(length=8, counts=(1, 2, 3, 4)),
              3: dict(length=12, counts=(1, 2, 3, 4, 5, 6))},
}

WORDS = ("cat", "dog", "bird", "fish", "cow", "pig", "fox", "owl", "bee", "ant", "hen",
         "duck")

NUMBER_FORMAT = 'Reply with "The answer is" followed by the number.'
FORMATS = {
    "compare": NUMBER_FORMAT,
    "arithmetic": NUMBER_FORMAT,
    "membership": 'Reply with "The answer is" followed by yes or no.',
    "sort": ('Reply with "The answer is" followed by all {n} numbers in sorted order, '
             'separated by commas.'),
    "minmax": NUMBER_FORMAT,
    "count": NUMBER_FORMAT,
}


def respond(answer: str) -> str:
    """The demonstration format."""
    return f"The answer is {answer}."


def _join(values) -> str:
    return ", ".join(str(v) for v in values)


# --------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Task:
    """One instance. `meta` is JSON-serialisable and holds everything `score` and
    `wrong_answer` need (family, level, answer, and the family's parameters)."""
    family: str
    level: int
    question: str
    answer: str
    meta: dict = dataclasses.field(hash=False, compare=False)
    source: str = ""

    @property
    def messages(self) -> Messages:
        return (user_turn(self.question),)

    @property
    def context(self) -> str:
        return render_context(self.messages)

    def demonstration(self) -> str:
        return respond(self.answer)

    def prompt(self) -> Prompt:
        return Prompt(messages=self.messages, context=self.context, meta=dict(self.meta),
                      source=self.source)


def _digits_range(digits: int, lead: str = "") -> tuple[int, int]:
    free = digits - len(lead)
    lo = int(lead + "0" * free) if lead else 10 ** (digits - 1)
    hi = int(lead + "9" * free) if lead else 10 ** digits - 1
    return lo, hi


def _distinct_numbers(rng: random.Random, n: int, digits: int = 2) -> list[int]:
    lo, hi = _digits_range(digits)
    return rng.sample(range(lo, hi + 1), n)


# Each generator: (rng, level params, stratum index) -> (key params, answer, meta, question
# pieces). `stratum` cycles over the balanced answer classes.

def _gen_compare(rng, p, stratum):
    asks = p.get("directions") or ("larger", "smaller")
    first_wins, ask = stratum % 2 == 0, asks[(stratum // 2) % len(asks)]
    digits, shared = p["digits"], p["shared"]
    lead = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(shared - 1))
    lead = lead if shared else ""
    lo, hi = _digits_range(digits, lead)
    while True:
        a, b = rng.sample(range(lo, hi + 1), 2)
        # Level 1: different leading digits; deeper levels: differ right after the shared part.
        if str(a)[shared] != str(b)[shared]:
            break
    big, small = max(a, b), min(a, b)
    right, wrong = (big, small) if ask == "larger" else (small, big)
    x, y = (right, wrong) if first_wins else (wrong, right)
    question = rng.choice([f"Which number is {ask}, {x} or {y}?",
                           f"Which of these two numbers is {ask}: {x} or {y}?"])
    meta = dict(numbers=[x, y], ask=ask)
    return (x, y, ask), str(right), meta, question


def _gen_arithmetic(rng, p, stratum):
    op = "+-"[stratum % 2]
    da, db = p["digits"]
    a = rng.randint(*_digits_range(da))
    b = rng.randint(*_digits_range(db))
    if op == "-" and b > a:
        a, b = b, a
    value = a + b if op == "+" else a - b
    question = rng.choice([f"What is {a} {op} {b}?", f"Compute {a} {op} {b}."])
    return (a, op, b), str(value), dict(a=a, b=b, op=op), question


def _gen_membership(rng, p, stratum):
    member = stratum % 2 == 0
    n = p["length"]
    items = _distinct_numbers(rng, n)
    if member:
        query = items[(stratum // 2) % n] if n else items[0]
    else:
        candidates = []
        if p["near"]:  # near misses: reversed digits, off by one
            for x in items:
                candidates += [int(str(x)[::-1]), x + 1, x - 1]
        candidates = [c for c in candidates if 10 <= c <= 99 and c not in items]
        query = rng.choice(candidates) if candidates else None
        while query is None or query in items:
            query = rng.randint(10, 99)
    lst = _join(items)
    question = rng.choice([f"Is {query} in the list {lst}?",
                           f"Does the list {lst} contain the number {query}?"])
    meta = dict(items=items, query=query)
    return (tuple(items), query), ("yes" if member else "no"), meta, question


def _gen_sort(rng, p, stratum):
    orders = p.get("directions") or ("ascending", "descending")
    order = orders[stratum % len(orders)]
    while True:
        items = _distinct_numbers(rng, p["length"], p["digits"])
        target = sorted(items, reverse=order == "descending")
        if items != target and items != target[::-1]:
            break
    lst = _join(items)
    words = ("from smallest to largest", "increasing") if order == "ascending" else \
        ("from largest to smallest", "decreasing")
    question = rng.choice([f"Sort the numbers {lst} {words[0]}.",
                           f"Put these numbers in {words[1]} order: {lst}."])
    return (tuple(items), order), _join(target), dict(items=items, order=order), question


def _gen_minmax(rng, p, stratum):
    asks = p.get("directions") or ("smallest", "largest")
    ask = asks[stratum % len(asks)]
    n = p["length"]
    position = (stratum // len(asks)) % n
    items = _distinct_numbers(rng, n)
    extreme = min(items) if ask == "smallest" else max(items)
    items.remove(extreme)
    items.insert(position, extreme)
    lst = _join(items)
    question = rng.choice([f"What is the {ask} of these numbers: {lst}?",
                           f"Which number in the list {lst} is the {ask}?"])
    return (tuple(items), ask), str(extreme), dict(items=items, ask=ask), question


def _gen_count(rng, p, stratum):
    counts = p["counts"]
    k = counts[stratum % len(counts)]
    n = p["length"]
    word = rng.choice(WORDS)
    others = [w for w in WORDS if w != word]
    items = [rng.choice(others) for _ in range(n - k)]
    for pos in sorted(rng.sample(range(n), k)):
        items.insert(pos, word)
    lst = _join(items)
    question = rng.choice([f"How many times does the word {word} appear in this list: {lst}?",
                           f"Count how often the word {word} occurs in the list {lst}."])
    return (tuple(items), word), str(k), dict(items=items, word=word), question


GENERATORS: dict[str, Callable] = {
    "compare": _gen_compare, "arithmetic": _gen_arithmetic, "membership": _gen_membership,
    "sort": _gen_sort, "minmax": _gen_minmax, "count": _gen_count,
}
# How many balanced answer classes a family cycles through (lcm of its strata).
_STRATA = {"compare": 4, "arithmetic": 2, "membership": 2 * 8 * 5 * 3, "sort": 2,
           "minmax": 2 * 3 * 5 * 8, "count": 12}


def split_of(family: str, level: int, key) -> str:
    """'train' or 'heldout': a fixed function of the instance's content."""
    digest = hashlib.sha256(f"{SPLIT_SALT}|{family}|{level}|{key!r}".encode()).digest()
    permille = HELDOUT_PERMILLE_CELL.get((family, level), HELDOUT_PERMILLE)
    return "heldout" if int.from_bytes(digest[:8], "big") % 1000 < permille else "train"


DIRECTIONS = {"compare": ("larger", "smaller"), "minmax": ("smallest", "largest"),
              "sort": ("ascending", "descending")}


def generate(seed: int, n: int, split: str = "train", families: Sequence[str] = FAMILIES,
             levels: Sequence[int] = (1, 2, 3), stream: str = "sft",
             max_tries: int = 200, directions: dict | None = None) -> list[Task]:
    """n tasks per (family, level) cell, all from `split` ('train' or 'heldout').

    Deterministic in (seed, stream, split, family, level). Answer classes are cycled
    (from a random offset), then the cell is shuffled, so the answer distribution is
    balanced exactly over each full cycle. Held-out tasks are distinct from each
    other while the cell's held-out space allows (`max_tries` draws to find a new
    one; arithmetic and compare level 1 hold only ~30-40 held-out instances, so a
    larger n repeats them: still i.i.d. draws from the held-out space); training tasks may
    repeat. `stream` names independent draws from the same split ("sft", "pairs",
    "eval").

    `directions` restricts the asked direction of compare / minmax / sort, e.g.
    {"compare": ("larger",)}: a judge then verifies by a first-order property of the
    candidates (the larger number, a sorted list), while with both directions its
    decision is an XOR of the direction and the comparison, which a small model
    trained from scratch does not learn from one-bit labels in minutes (measured).
    """
    directions = dict(directions or {})
    for family, asked in directions.items():
        if family not in DIRECTIONS or not set(asked) <= set(DIRECTIONS[family]) or not asked:
            raise ValueError(f"directions[{family!r}]={asked!r}: expected a non-empty subset "
                             f"of {DIRECTIONS.get(family)} for one of {sorted(DIRECTIONS)}")
    if split not in ("train", "heldout"):
        raise ValueError(f"split={split!r}: expected 'train' or 'heldout'")
    tasks = []
    for family in families:
        if family not in GENERATORS:
            raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
        for level in levels:
            if level not in LEVELS[family]:
                raise ValueError(f"{family}: unknown level {level}; known: "
                                 f"{sorted(LEVELS[family])}")
            rng = random.Random(f"{seed}|{stream}|{split}|{family}|{level}")
            seen, cell = set(), []
            offset = rng.randrange(_STRATA[family])
            for i in range(n):
                new = repeat = None
                for _ in range(max_tries):
                    params = dict(LEVELS[family][level], directions=directions.get(family))
                    draw = GENERATORS[family](rng, params, i + offset)
                    if split_of(family, level, draw[0]) != split:
                        continue
                    if split == "train" or draw[0] not in seen:
                        new = draw
                        break
                    repeat = repeat or draw
                if new is None and repeat is None:
                    raise RuntimeError(f"{family} level {level}: no {split} instance in "
                                       f"{max_tries} draws")
                key, answer, meta, question = new or repeat
                seen.add(key)
                source = f"synthetic:{seed}:{stream}:{family}:{level}:{i}"
                question = f"{question} {FORMATS[family].format(n=len(meta.get('items', ())))}"
                meta = dict(task="synthetic", family=family, level=level, answer=answer,
                            **meta)
                cell.append(Task(family, level, question, answer, meta, source))
            rng.shuffle(cell)
            tasks += cell
    return tasks


# --------------------------------------------------------------------------
# Wrong answers
# --------------------------------------------------------------------------

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
        return _join(candidates[kind]), kind
    raise ValueError(f"unknown family {family!r}")


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------

def sft_conversations(tasks: Sequence[Task], wrong_fraction: float = 0.0,
                      seed: int = 0) -> list[Conversation]:
    """One conversation per task; exactly round(wrong_fraction * len(tasks)) of them
    (chosen at random) demonstrate a wrong answer (their source ends in ':wrong')."""
    if not 0 <= wrong_fraction <= 1:
        raise ValueError(f"wrong_fraction={wrong_fraction} must be in [0, 1]")
    rng = random.Random(f"{seed}|sft-wrong")
    wrong = set(rng.sample(range(len(tasks)), round(wrong_fraction * len(tasks))))
    out = []
    for i, task in enumerate(tasks):
        if i in wrong:
            text, source = respond(wrong_answer(task.meta, rng)[0]), task.source + ":wrong"
        else:
            text, source = task.demonstration(), task.source
        out.append(Conversation(task.messages + (assistant_turn(text),), source))
    return out


@dataclasses.dataclass(frozen=True)
class LabelledPair:
    messages: Messages   # the prompt (user turn)
    chosen: str
    rejected: str
    kind: str            # what kind of wrong answer `rejected` is
    source: str = ""

    def judgment(self, principle: str = "helpfulness") -> Judgment:
        return Judgment(render_context(self.messages), self.chosen, self.rejected, principle,
                        source=self.source, messages=self.messages)

    def row(self) -> dict:
        return preference_row(self.messages, self.chosen, self.rejected)


def labelled_pairs(tasks: Sequence[Task], seed: int = 0) -> list[LabelledPair]:
    """(right, plausible wrong) per task, both in the demonstration format."""
    rng = random.Random(f"{seed}|pairs")
    out = []
    for task in tasks:
        wrong, kind = wrong_answer(task.meta, rng)
        out.append(LabelledPair(task.messages, task.demonstration(), respond(wrong), kind,
                                task.source))
    return out


def judgments(tasks: Sequence[Task], seed: int = 0,
              principle: str = "helpfulness") -> list[Judgment]:
    return [p.judgment(principle) for p in labelled_pairs(tasks, seed)]


def prompts(tasks: Sequence[Task]) -> list[Prompt]:
    return [t.prompt() for t in tasks]


@dataclasses.dataclass
class SampleCounts:
    identical: int = 0
    both_correct: int = 0
    both_wrong: int = 0
    informative: int = 0   # exactly one correct: these become Judgment records

    @property
    def total(self) -> int:
        return self.identical + self.both_correct + self.both_wrong + self.informative


def pairs_from_samples(prompts: Sequence[Prompt], responses_a: Sequence[str],
                       responses_b: Sequence[str], principle: str = "helpfulness"
                       ) -> tuple[list[Judgment], SampleCounts]:
    """Labels a model's two samples per prompt with the oracle. Identical responses
    (after stripping whitespace) are counted as identical whatever their score; of
    the others, only pairs with exactly one correct response become Judgments
    (chosen = the correct one)."""
    if not len(prompts) == len(responses_a) == len(responses_b):
        raise ValueError(f"{len(prompts)} prompts but {len(responses_a)} and "
                         f"{len(responses_b)} responses")
    counts, out = SampleCounts(), []
    for i, (p, a, b) in enumerate(zip(prompts, responses_a, responses_b)):
        if a.strip() == b.strip():
            counts.identical += 1
            continue
        sa, sb = score(p.meta, a), score(p.meta, b)
        if sa and sb:
            counts.both_correct += 1
        elif not sa and not sb:
            counts.both_wrong += 1
        else:
            counts.informative += 1
            chosen, rejected = (a, b) if sa else (b, a)
            out.append(Judgment(p.context, chosen, rejected, principle,
                                source=f"{p.source or f'prompt {i}'}:samples",
                                messages=p.messages))
    return out, counts


# --------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------

def preference_row(messages: Sequence[dict], chosen: str, rejected: str) -> dict:
    """The generic preference format (TRL conversational): message lists."""
    return {"prompt": [dict(m) for m in messages],
            "chosen": [assistant_turn(chosen)], "rejected": [assistant_turn(rejected)]}


def write_jsonl(path: str, rows: Iterable[dict]) -> int:
    n = 0
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_preference_jsonl(path: str, pairs: Iterable[LabelledPair]) -> int:
    return write_jsonl(path, (p.row() for p in pairs))


def prompt_row(p: Prompt) -> dict:
    return {"messages": [dict(m) for m in p.messages], "context": p.context, "meta": p.meta,
            "source": p.source}


def read_prompts(path: str) -> list[Prompt]:
    """Reads a prompts.jsonl written by `write_suite`; errors name the file and line."""
    out = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                messages = tuple(dict(role=m["role"], content=m["content"])
                                 for m in row["messages"])
                meta = row["meta"]
                if meta.get("family") not in GENERATORS or "answer" not in meta:
                    raise KeyError("meta.family/meta.answer")
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{line_no}: not a synthetic prompt row ({e!r})") from e
            out.append(Prompt(messages, row.get("context") or render_context(messages), meta,
                              row.get("source") or f"{path}:{line_no}"))
    return out


def write_suite(out: str, seed: int = 0, n_sft: int = 200, n_pairs: int = 200,
                n_heldout: int = 32, wrong_fraction: float = 0.2,
                families: Sequence[str] = FAMILIES, levels: Sequence[int] = (1, 2, 3)) -> dict:
    """Writes sft.jsonl, pairs.jsonl (TRL style) and prompts.jsonl (held out) into
    `out`; n_* are per (family, level) cell. -> {file: rows}."""
    sft_tasks = generate(seed, n_sft, "train", families, levels, stream="sft")
    pair_tasks = generate(seed, n_pairs, "train", families, levels, stream="pairs")
    heldout = generate(seed, n_heldout, "heldout", families, levels, stream="eval")
    paths = {name: os.path.join(out, name) for name in ("sft.jsonl", "pairs.jsonl",
                                                        "prompts.jsonl")}
    return {
        "sft.jsonl": write_jsonl(paths["sft.jsonl"], (
            {"messages": [dict(m) for m in c.messages], "source": c.source}
            for c in sft_conversations(sft_tasks, wrong_fraction, seed))),
        "pairs.jsonl": write_preference_jsonl(paths["pairs.jsonl"],
                                              labelled_pairs(pair_tasks, seed)),
        "prompts.jsonl": write_jsonl(paths["prompts.jsonl"],
                                     (prompt_row(t.prompt()) for t in heldout)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sjjax.data.synthetic",
                                     description="Write the synthetic task suite.")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-sft", type=int, default=200, help="SFT tasks per family/level")
    parser.add_argument("--n-pairs", type=int, default=200, help="pairs per family/level")
    parser.add_argument("--n-heldout", type=int, default=32,
                        help="held-out prompts per family/level")
    parser.add_argument("--wrong-fraction", type=float, default=0.2,
                        help="fraction of SFT demonstrations with a wrong answer")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--levels", default="1,2,3")
    args = parser.parse_args(argv)
    written = write_suite(args.out, args.seed, args.n_sft, args.n_pairs, args.n_heldout,
                          args.wrong_fraction, [f for f in args.families.split(",") if f],
                          [int(x) for x in args.levels.split(",") if x])
    for name, n in written.items():
        print(f"{os.path.join(args.out, name)}: {n} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
