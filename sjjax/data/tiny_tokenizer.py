"""A tiny byte-level BPE tokenizer for the synthetic suite (from-scratch models).

    tokenizer = build_tiny_tokenizer()          # transformers PreTrainedTokenizerFast
    tokenizer.save_pretrained(DIR)              # AutoTokenizer.from_pretrained(DIR) loads it
    python -m sjjax.data.tiny_tokenizer --out DIR

- Byte-level BPE (GPT-2 style byte alphabet, so any text round-trips:
  decode(encode(x)) == x), with merges learnt by a small deterministic trainer
  (most frequent pair first, ties broken by the pair's text) on a corpus drawn from
  the synthetic suite (questions, right and wrong answers) and the judge templates
  of `sjjax.data.templates.default_judge_templates()` filled with suite pairs. The same
  arguments give the same vocabulary, byte for byte. The vocabulary depends on the
  suite's wording: save the tokenizer next to a model trained with it.
- Numbers (`numbers=`): "digits" (default) splits every digit (pre-tokenizer
  `Digits(individual_digits=True)`), so numbers are digit sequences and arithmetic is
  learnable; "pairs" makes every 1- or 2-digit string one token ("7", "85", "05": 110
  tokens, merged before any learnt merge; longer numbers are split into pairs from the
  left, "123" -> "12", "3"), so asking whether a two-digit number is in a list is one
  token match for attention rather than a match of two-token sequences
  (docs/results.md, "Numbers as single tokens").
- Special tokens: <|pad|> (0, pad), <|im_start|> (1), <|im_end|> (2, eos). No BOS.
- ChatML chat template: `<|im_start|>{role}\\n{content}<|im_end|>\\n` per message,
  `<|im_start|>assistant\\n` as the generation prompt, no default system message.
- " A" and " B" are single distinct tokens (the judge tokens).
"""

from __future__ import annotations

import argparse
import collections
import sys
from typing import Iterable, Sequence

from sjjax.errors import ConfigError

PAD, IM_START, IM_END = "<|pad|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (PAD, IM_START, IM_END)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


NUMBERS = ("digits", "pairs")
DIGITS = "0123456789"


def _check_numbers(numbers: str) -> None:
    if numbers not in NUMBERS:
        raise ConfigError(f"config.model.tiny.numbers={numbers!r}: expected one of {NUMBERS}")


def _pre_tokenizer(numbers: str = "digits"):
    from tokenizers import Regex, pre_tokenizers
    _check_numbers(numbers)
    split_numbers = (pre_tokenizers.Digits(individual_digits=True) if numbers == "digits"
                     else pre_tokenizers.Split(Regex(r"[0-9][0-9]?"), behavior="isolated"))
    return pre_tokenizers.Sequence([
        split_numbers, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])


def _number_merges(numbers: str) -> list[tuple[str, str]]:
    """The merges that make every two-digit string one token (numbers="pairs")."""
    return [(a, b) for a in DIGITS for b in DIGITS] if numbers == "pairs" else []


def training_corpus(seed: int = 0, n_per_cell: int = 40) -> list[str]:
    """Texts the tokenizer is trained on: suite questions, right and wrong answers,
    and judge prompts (every default judge template) over suite pairs."""
    import random

    from sjjax.data import synthetic
    from sjjax.data.records import ROLE_NAMES, render_context
    from sjjax.data.templates import default_judge_templates

    texts = []
    for role, name in ROLE_NAMES.items():
        texts += [role, name, f"{name}:"] * 20
    tasks = synthetic.generate(seed, n_per_cell, "train", stream="tokenizer")
    rng = random.Random(f"{seed}|tokenizer")
    templates = default_judge_templates()
    for i, task in enumerate(tasks):
        right = task.demonstration()
        wrong = synthetic.respond(synthetic.wrong_answer(task.meta, rng)[0])
        texts += [task.question, right, wrong]
        template = templates[sorted(templates)[i % len(templates)]]
        a, b = (right, wrong) if i % 2 else (wrong, right)
        texts.append(template["user"].format(context=render_context(task.messages),
                                             response_a=a, response_b=b))
        if template.get("system"):
            texts.append(template["system"])
        texts.append(template.get("assistant_prefix", "") + (" A" if i % 2 else " B"))
        if template.get("rationale"):
            texts.append(template["rationale"].format(
                rationale_a=f"It says {right}", rationale_b=f"It says {wrong}"))
    return texts


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
              numbers: str = "digits") -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Deterministic byte-level BPE: -> (vocab, merges). The vocabulary is the
    special tokens, the 256 byte symbols, the 100 two-digit strings (numbers="pairs"),
    then one token per learnt merge, until `vocab_size` or no pair occurs
    `min_frequency` times."""
    from tokenizers import pre_tokenizers

    pre = _pre_tokenizer(numbers)
    counts: collections.Counter = collections.Counter()
    for text in texts:
        for piece, _ in pre.pre_tokenize_str(text):
            counts[piece] += 1
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=lambda c: (ord(c)))
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for symbol in alphabet:
        vocab[symbol] = len(vocab)
    merges = _number_merges(numbers)
    for left, right in merges:
        vocab[left + right] = len(vocab)
    # Words as symbol lists, in a fixed order (a two-digit piece is already one symbol).
    words = [([piece] if merges and len(piece) == 2 and piece.isdigit() else list(piece), n)
             for piece, n in sorted(counts.items())]
    while len(vocab) < vocab_size:
        pairs: collections.Counter = collections.Counter()
        for symbols, n in words:
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < min_frequency:
            break
        (left, right), _ = best
        merged = left + right
        merges.append((left, right))
        vocab.setdefault(merged, len(vocab))
        for symbols, _ in words:
            i = 0
            while i < len(symbols) - 1:
                if symbols[i] == left and symbols[i + 1] == right:
                    symbols[i:i + 2] = [merged]
                i += 1
    return vocab, merges


def build_tiny_tokenizer(vocab_size: int = 1024, seed: int = 0, n_per_cell: int = 40,
                         texts: Sequence[str] | None = None, numbers: str = "digits"):
    """-> a transformers PreTrainedTokenizerFast (left padding, pad/eos set, ChatML
    template). `texts` replaces the default corpus (`training_corpus(seed, n_per_cell)`);
    `numbers`: "digits" or "pairs" (module docstring)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab, merges = train_bpe(texts if texts is not None else
                              training_corpus(seed, n_per_cell), vocab_size,
                              numbers=numbers)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    backend.pre_tokenizer = _pre_tokenizer(numbers)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t in SPECIAL_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=None, eos_token=IM_END, pad_token=PAD,
        unk_token=None, chat_template=CHAT_TEMPLATE, padding_side="left",
        clean_up_tokenization_spaces=False, model_max_length=1 << 20)
    tokenizer.add_special_tokens({"additional_special_tokens": [IM_START]})
    return tokenizer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sjjax.data.tiny_tokenizer",
                                     description="Build and save the tiny tokenizer.")
    parser.add_argument("--out", required=True, help="directory for save_pretrained")
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--numbers", choices=NUMBERS, default="digits")
    args = parser.parse_args(argv)
    tokenizer = build_tiny_tokenizer(args.vocab_size, args.seed, numbers=args.numbers)
    tokenizer.save_pretrained(args.out)
    print(f"{args.out}: {len(tokenizer)} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
