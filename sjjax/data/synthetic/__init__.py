"""A verifiable synthetic task suite: natural-language instructions whose answers a
program checks, so Self-Judge can be measured without a human or GPT-4 evaluator.

Families (each at levels 1, 2, 3; `tasks` describes the levels, the answer balance and
the train/held-out split):

    compare     Which number is larger/smaller, a or b?        "The answer is 52."
    arithmetic  What is a + b / a - b?                          "The answer is 127."
    membership  Is q in the list ...?                           "The answer is yes."
    sort        Sort the numbers ... from smallest to largest.  "The answer is 3, 5, 9, 12."
    minmax      What is the smallest/largest of these numbers?  "The answer is 8."
    count       How many times does the word w appear in ...?   "The answer is 3."

Greedy accuracy of SmolLM2-135M-Instruct (the Q4_1 GGUF, sjjax sampler, 48 new
tokens, 48 held-out prompts per cell; `bench/synthetic_difficulty.py`):

                L1    L2    L3
    compare     0.56  0.62  0.46   (mostly picks the second number: chance)
    arithmetic  0.40  0.00  0.04
    membership  0.38  0.46  0.42   (mostly answers "no")
    sort        0.04  0.00  0.00   (echoes the input or gives one number)
    minmax      0.52  0.35  0.35
    count       0.23  0.23  0.08   (mostly answers 1)

Records (`records`, of the types of `sjjax.data.records`; the oracle's rules: `oracle`):
- `sft_conversations`: SFT `Conversation`s, a chosen fraction of them with a WRONG
  demonstration (so SFT alone is imperfect).
- `labelled_pairs` / `judgments`: (context, chosen = right, rejected = plausible
  wrong). The wrong answer has the format and length of the right one (same
  number of digits, same list length) and is of a kind models get wrong: the other
  candidate, a carry/borrow error, off by one or ten, adjacent digits swapped, an
  adjacent swap in a sort, the wrong direction, a dropped element, the second
  smallest, a miscount by one or two.
- `Task.prompt()`: held-out `Prompt`s whose `meta` carries what `score` needs.
- `shortcut_proof_pairs`: held-out (right, wrong) pairs whose wrong answers are chosen
  (from `negatives.wrong_candidates`: numbers above and below, inside and outside the
  question, off by one, hedges, sorted-looking lists) so that no question-blind rule of
  `sjjax.evaluation.shortcuts` is right on more than about half of them.
- `pairs_from_samples`: Judgment records from a model's own two samples per prompt,
  labelled by the oracle (only pairs with exactly one correct response).

One job per module:
    tasks       the families and levels: instances, their wording, right answers, split
    negatives   plausible wrong answers
    oracle      scores a free-form response against a task's answer
    rationales  a response's check against its question (JM-PR rationales)
    records     the suite as SFT conversations, labelled pairs, judgments, prompts
    files       JSONL rows, reading prompts, writing the suite into a directory
    __main__    python -m sjjax.data.synthetic --out DIR (writes the suite)
"""

from sjjax.data.synthetic.files import (prompt_row, read_prompts, write_jsonl,
                                        write_preference_jsonl, write_suite)
from sjjax.data.synthetic.negatives import wrong_answer, wrong_candidates
from sjjax.data.synthetic.oracle import accuracy, extract_answer, score
from sjjax.data.synthetic.rationales import explain, explainer
from sjjax.data.synthetic.records import (LabelledPair, SampleCounts, judgments, labelled_pairs,
                                          shortcut_proof_pairs,
                                          pairs_from_samples, preference_row, prompts,
                                          sft_conversations)
from sjjax.data.synthetic.tasks import (DIRECTIONS, FAMILIES, FORMATS, GENERATORS,
                                        HELDOUT_PERMILLE, HELDOUT_PERMILLE_CELL, LEVELS,
                                        NUMBER_FORMAT, SPLIT_SALT, WORDS, Task, comma_join,
                                        generate, respond, split_of)


def main(argv=None) -> int:
    """The command line (`python -m sjjax.data.synthetic`); see `__main__.py`."""
    from sjjax.data.synthetic.__main__ import main as _main
    return _main(argv)


__all__ = [
    "DIRECTIONS", "FAMILIES", "FORMATS", "GENERATORS", "HELDOUT_PERMILLE",
    "HELDOUT_PERMILLE_CELL", "LEVELS", "LabelledPair", "NUMBER_FORMAT", "SPLIT_SALT",
    "SampleCounts", "Task", "WORDS", "accuracy", "comma_join", "explain", "explainer",
    "extract_answer", "generate",
    "judgments", "labelled_pairs", "main", "pairs_from_samples", "preference_row",
    "prompt_row", "prompts", "read_prompts", "respond", "score", "sft_conversations",
    "shortcut_proof_pairs", "split_of", "write_jsonl", "write_preference_jsonl",
    "write_suite", "wrong_answer", "wrong_candidates",
]
