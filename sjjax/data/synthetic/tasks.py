"""The task families of the synthetic suite: per family and level, a generator of
instances (the question, its format instruction, the right answer and the `meta` the
oracle needs), and the content-based train/held-out split.

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

Every prompt ends with the same format instruction ('Reply with "The answer is"
followed by ...'), and every demonstration uses that format. Answers are balanced
so that no prior wins: yes/no 50/50, the right number first or second 50/50,
larger/smaller and ascending/descending 50/50, the position of the extreme
uniform, counts uniform over the level's range, and a wrong answer is above the
right one as often as below.

Train/held-out split: an instance's split is a fixed function of its content (a
hash of family, level and parameters; the wording variant is not part of it), so
it does not depend on the seed or the counts asked for. 10% of each cell's
instance space is held out (25% for the small compare and arithmetic level-1
cells). Held-out instances are distinct while the cell's held-out space allows;
training instances may repeat.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import Callable, Sequence

from sjjax.data.records import Messages, Prompt, render_context, user_turn

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


def comma_join(values) -> str:
    """[3, 5, 9] -> '3, 5, 9' (how lists appear in questions and answers)."""
    return ", ".join(str(v) for v in values)


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
    lst = comma_join(items)
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
    lst = comma_join(items)
    words = ("from smallest to largest", "increasing") if order == "ascending" else \
        ("from largest to smallest", "decreasing")
    question = rng.choice([f"Sort the numbers {lst} {words[0]}.",
                           f"Put these numbers in {words[1]} order: {lst}."])
    return ((tuple(items), order), comma_join(target), dict(items=items, order=order),
            question)


def _gen_minmax(rng, p, stratum):
    asks = p.get("directions") or ("smallest", "largest")
    ask = asks[stratum % len(asks)]
    n = p["length"]
    position = (stratum // len(asks)) % n
    items = _distinct_numbers(rng, n)
    extreme = min(items) if ask == "smallest" else max(items)
    items.remove(extreme)
    items.insert(position, extreme)
    lst = comma_join(items)
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
    lst = comma_join(items)
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

