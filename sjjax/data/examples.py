"""Records -> training examples: token ids and loss masks (numpy), with a truncation
policy and counts.

- JSFT (`build_jsft_examples`): SFT conversations (loss on every assistant turn,
  end-of-turn token included) and judgment examples in both orders (target: the
  decision token, then the rationale when the template and the record have one,
  then end-of-turn), mixed at `sft_per_judge` SFT examples per judgment example.
- DPO (`build_dpo_pairs`): for a Judgment with `messages`, or a (Prompt, chosen,
  rejected) triple: chat prompt + response for chosen and for rejected, loss on
  the response and its end-of-turn only; both share the same (truncated) prompt.

All token layout comes from `sjjax.data.templates` (ChatEncoder, JudgePromptBuilder):
the judge examples are exactly `JudgePromptBuilder.training_example`, whose prompt
part is what online judging feeds the judge.

Truncation to `max_length` never cuts a target:
- conversations: drop the earliest turns (leading system messages are kept; the kept
  part starts at a user turn), then left-trim the last user turn's text;
- judgments: trim the context from the left (`JudgePromptBuilder`); responses are
  never trimmed for training.
An example whose target cannot fit is dropped and counted in `ExampleStats.dropped`.

`loss_mask[i]` True means token i is a target (predicted from position i - 1).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Iterable, Sequence

import numpy as np

from sjjax.data.records import Conversation, Judgment, Prompt, assistant_turn
from sjjax.data.templates import ChatEncoder, Encoded, JudgePromptBuilder
from sjjax.errors import ConfigError, DataError

log = logging.getLogger(__name__)

KINDS = ("sft", "judge", "pref_chosen", "pref_rejected")
KIND_IDS = {k: i for i, k in enumerate(KINDS)}   # batch["kind"] values; padding rows: -1
_MAX_MESSAGES = 20


@dataclasses.dataclass(frozen=True, eq=False)
class Example:
    """tokens int32 [n]; loss_mask bool [n]; kind in KINDS; source "file:line"."""
    tokens: np.ndarray
    loss_mask: np.ndarray
    kind: str
    source: str = ""

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def from_encoded(cls, encoded: Encoded, kind: str, source: str) -> "Example":
        return cls(np.asarray(encoded.tokens, np.int32), np.asarray(encoded.loss_mask, bool),
                   kind, source)


@dataclasses.dataclass(frozen=True, eq=False)
class PrefPair:
    """One offline preference pair: same prompt tokens, loss on each response only."""
    chosen: Example
    rejected: Example
    source: str = ""

    def __len__(self) -> int:
        return max(len(self.chosen), len(self.rejected))


@dataclasses.dataclass
class ExampleStats:
    """Counts per kind: built (kept), truncated (context trimmed, kept), dropped (the
    target cannot fit max_length), mixed_out (removed by the SFT:judgment ratio)."""
    built: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    truncated: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    dropped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    mixed_out: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    notes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    drop_messages: list = dataclasses.field(default_factory=list)

    def drop(self, kind: str, message: str) -> None:
        self.dropped[kind] += 1
        if len(self.drop_messages) < _MAX_MESSAGES:
            self.drop_messages.append(message)

    def as_dict(self) -> dict:
        return {f.name: (dict(getattr(self, f.name)) if f.name != "drop_messages"
                         else list(self.drop_messages)) for f in dataclasses.fields(self)}

    def log(self, logger: logging.Logger = log) -> None:
        logger.info("examples built %s, truncated %s, dropped (target does not fit) %s, "
                    "removed by mixing %s, notes %s", dict(self.built), dict(self.truncated),
                    dict(self.dropped), dict(self.mixed_out), dict(self.notes))
        for message in self.drop_messages:
            logger.warning("dropped %s", message)


# --------------------------------------------------------------------------
# Conversations: truncation plan and encoding
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Plan:
    start: int      # keep messages[:n_system] + messages[start:]
    cut: int = 0    # tokens removed from the front of the first kept user turn's text

    @property
    def truncated(self) -> bool:
        return self.cut > 0 or self.start > 0


def _n_system(messages) -> int:
    n = 0
    while n < len(messages) and messages[n]["role"] == "system":
        n += 1
    return n


def _apply_plan(chat: ChatEncoder, messages, plan: _Plan) -> tuple[Encoded, list[int]]:
    n_sys = _n_system(messages)
    kept = list(messages[:n_sys]) + list(messages[max(plan.start, n_sys):])
    encoded, starts = chat.encode_conversation(kept)
    if plan.cut:
        s = starts[n_sys]
        encoded = Encoded(np.concatenate([encoded.tokens[:s], encoded.tokens[s + plan.cut:]]),
                          np.concatenate([encoded.loss_mask[:s],
                                          encoded.loss_mask[s + plan.cut:]]))
        starts = [t if i <= n_sys else t - plan.cut for i, t in enumerate(starts)]
    return encoded, starts


def _fit(chat: ChatEncoder, messages, max_length: int | None):
    """-> (plan, encoded, starts) with len(encoded) <= max_length, or None if the last
    assistant turn (the target) cannot fit."""
    plan = _Plan(0)
    encoded, starts = _apply_plan(chat, messages, plan)
    if max_length is None or len(encoded) <= max_length:
        return plan, encoded, starts
    n_sys = _n_system(messages)
    last = len(messages) - 1
    users = [i for i in range(n_sys + 1, last) if messages[i]["role"] == "user"]
    # 1. drop the earliest turns, so that the kept part starts at a user turn; the
    #    length after dropping is estimated from the content starts, then verified.
    for k in users:
        if len(encoded) - (starts[k] - starts[n_sys]) > max_length:
            continue
        plan = _Plan(k)
        encoded_k, starts_k = _apply_plan(chat, messages, plan)
        if len(encoded_k) <= max_length:
            return plan, encoded_k, starts_k
    # 2. keep only the last exchange and left-trim its user turn.
    u = users[-1] if users else n_sys
    if messages[u]["role"] != "user":
        return None
    base = _Plan(u)
    encoded_u, _ = _apply_plan(chat, messages, base)
    excess = len(encoded_u) - max_length
    if excess > len(chat.pieces.content(messages[u]["content"])):
        return None
    plan = _Plan(u, excess)
    encoded, starts = _apply_plan(chat, messages, plan)
    return plan, encoded, starts


def encode_sft(chat: ChatEncoder, conversation: Conversation, max_length: int | None
               ) -> tuple[Example | None, bool]:
    """-> (Example or None if the last assistant turn cannot fit, truncated?)."""
    messages = list(conversation.messages)
    if not messages or messages[-1]["role"] != "assistant":
        raise DataError(f"{conversation.source}: an SFT conversation must end with an "
                        f"assistant turn")
    fitted = _fit(chat, messages, max_length)
    if fitted is None:
        return None, False
    plan, encoded, _ = fitted
    return Example.from_encoded(encoded, "sft", conversation.source), plan.truncated


# --------------------------------------------------------------------------
# Judgments
# --------------------------------------------------------------------------

def encode_judgment(judge: JudgePromptBuilder, judgment: Judgment, max_length: int | None
                    ) -> list[tuple[Example | None, bool]]:
    """Both orders (chosen shown first -> target A; chosen second -> target B):
    [(Example or None if it cannot fit, context trimmed?)] * 2."""
    if judgment.principle not in judge.templates:
        raise ConfigError(f"config.judge.principles: {judgment.source} has principle "
                          f"{judgment.principle!r}, which has no judge template "
                          f"(configured: {judge.principles})")
    if judge.checks(judgment.principle) and judgment.rationale_chosen is None:
        raise ConfigError(f"{judgment.source}: config.judge.templates.{judgment.principle}"
                          f".check needs each response's check (rationale_chosen and "
                          f"rationale_rejected; a synthetic source: rationales=True)")
    out = []
    for chosen_first in (True, False):
        result = judge.training_example(
            judgment.principle, judgment.context, judgment.chosen, judgment.rejected,
            chosen_first, judgment.rationale_chosen, judgment.rationale_rejected,
            max_length=max_length, on_overflow="drop")
        if result is None:
            out.append((None, False))
            continue
        encoded, prompt = result
        order = "AB" if chosen_first else "BA"
        out.append((Example.from_encoded(encoded, "judge", f"{judgment.source}:{order}"),
                    prompt.context_trimmed > 0))
    return out


# --------------------------------------------------------------------------
# JSFT
# --------------------------------------------------------------------------

def _subsample(groups: list, keep: int, rng: np.random.Generator) -> list:
    if keep >= len(groups):
        return groups
    chosen = np.sort(rng.choice(len(groups), size=keep, replace=False))
    return [groups[i] for i in chosen]


def build_jsft_examples(conversations: Sequence[Conversation], judgments: Sequence[Judgment],
                        chat: ChatEncoder, judge: JudgePromptBuilder,
                        max_length: int | None, sft_per_judge: float | None = None,
                        seed: int = 0) -> tuple[list[Example], ExampleStats]:
    """-> (SFT examples then judgment examples, stats).

    sft_per_judge: SFT examples per judgment example after mixing (None: keep all).
    The side in excess is subsampled (seeded, order kept); the two orders of a
    judgment are kept or removed together. Nothing is repeated.
    """
    stats = ExampleStats()
    sft = []
    for conversation in conversations:
        example, truncated = encode_sft(chat, conversation, max_length)
        if example is None:
            stats.drop("sft", f"{conversation.source}: the last assistant turn does not fit "
                              f"max_length={max_length}")
            continue
        stats.truncated["sft"] += truncated
        sft.append(example)
    pairs = []  # the examples of one judgment (both orders, minus drops)
    for judgment in judgments:
        has_rationale = judgment.rationale_chosen is not None
        template = judge.templates[judgment.principle]
        if has_rationale and not (template.rationale or template.check):
            stats.notes["rationale_without_template"] += 1
        group = []
        for order, (example, truncated) in zip(("AB", "BA"),
                                               encode_judgment(judge, judgment, max_length)):
            if example is None:
                stats.drop("judge", f"{judgment.source}:{order}: the responses and the "
                                    f"target do not fit max_length={max_length}")
                continue
            stats.truncated["judge"] += truncated
            group.append(example)
        if group:
            pairs.append(group)
    if sft_per_judge is not None:
        if sft_per_judge < 0:
            raise ConfigError(f"config.data.sft_per_judge: {sft_per_judge} must be >= 0")
        rng = np.random.default_rng(seed)
        n_judge = sum(len(g) for g in pairs)
        want_sft = int(round(sft_per_judge * n_judge))
        if want_sft <= len(sft):
            stats.mixed_out["sft"] = len(sft) - want_sft
            sft = _subsample(sft, want_sft, rng)
        else:
            keep = int(round(len(sft) / sft_per_judge / 2))
            kept = _subsample(pairs, keep, rng)
            stats.mixed_out["judge"] = n_judge - sum(len(g) for g in kept)
            pairs = kept
    judge_examples = [e for g in pairs for e in g]
    stats.built["sft"], stats.built["judge"] = len(sft), len(judge_examples)
    stats.log()
    return sft + judge_examples, stats


# --------------------------------------------------------------------------
# Offline DPO pairs
# --------------------------------------------------------------------------

def _response_only(encoded: Encoded, start: int) -> Encoded:
    mask = encoded.loss_mask.copy()
    mask[:start] = False
    return Encoded(encoded.tokens, mask)


def encode_pref_pair(chat: ChatEncoder, messages: Sequence[dict], chosen: str, rejected: str,
                     max_length: int | None, source: str = ""
                     ) -> tuple[PrefPair | None, bool]:
    """Chat prompt `messages` + each response. The truncation plan is computed on the
    longer response and applied to both, so both rows share the prompt tokens.
    -> (PrefPair or None if the longer response cannot fit, truncated?)."""
    messages = list(messages)
    if not messages:
        raise DataError(f"{source}: a preference pair needs a non-empty prompt")
    n_chosen = len(chat.pieces.content(chosen))
    n_rejected = len(chat.pieces.content(rejected))
    chosen_longer = n_chosen >= n_rejected
    longer, shorter = (chosen, rejected) if chosen_longer else (rejected, chosen)
    fitted = _fit(chat, messages + [assistant_turn(longer)], max_length)
    if fitted is None:
        return None, False
    plan, encoded_long, starts_long = fitted
    encoded_short, starts_short = _apply_plan(chat, messages + [assistant_turn(shorter)], plan)
    long_ = _response_only(encoded_long, starts_long[-1])
    short = _response_only(encoded_short, starts_short[-1])
    encoded_c, encoded_r = (long_, short) if chosen_longer else (short, long_)
    pair = PrefPair(Example.from_encoded(encoded_c, "pref_chosen", source),
                    Example.from_encoded(encoded_r, "pref_rejected", source), source)
    return pair, plan.truncated


def build_dpo_pairs(items: Iterable, chat: ChatEncoder, max_length: int | None
                    ) -> tuple[list[PrefPair], ExampleStats]:
    """items: Judgments (with `messages`) or (Prompt, chosen text, rejected text)."""
    stats = ExampleStats()
    pairs = []
    for item in items:
        if isinstance(item, Judgment):
            if item.messages is None:
                raise DataError(f"{item.source}: this judgment has no `messages` (its source "
                                f"only gives rendered context); pass (Prompt, chosen, "
                                f"rejected) triples for DPO pairs")
            messages, chosen, rejected, source = (item.messages, item.chosen, item.rejected,
                                                  item.source)
        else:
            prompt, chosen, rejected = item
            if not isinstance(prompt, Prompt):
                raise TypeError(f"expected a Judgment or (Prompt, str, str), got "
                                f"{type(item).__name__}")
            messages, source = prompt.messages, prompt.source
        pair, truncated = encode_pref_pair(chat, messages, chosen, rejected, max_length,
                                           source)
        if pair is None:
            stats.drop("pref", f"{source}: the longer response does not fit "
                               f"max_length={max_length}")
            continue
        stats.truncated["pref"] += truncated
        pairs.append(pair)
    stats.built["pref"] = len(pairs)
    stats.log()
    return pairs, stats
