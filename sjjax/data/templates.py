"""Chat and judge templates -> token ids and loss masks.

Token-exact judging: the judge must see at inference exactly the token layout it
was trained on. So one builder (`JudgePromptBuilder`) makes the judge prompt both
for JSFT training examples and for online judging, and it builds ids by pieces:

    chat template rendered with sentinels in place of the variable texts
      -> literal pieces (headers, instructions) + slots (context, responses, target)
      -> each piece tokenized on its own, then concatenated.

Piece-wise tokenization makes the layout independent of what the variable texts
contain (no BPE merge across a boundary), makes the prefix shared by the two
orders of a pair a clean token prefix (computed once by the judge), and lets the
context be trimmed from the left in token units. User-provided text is tokenized
with `split_special_tokens=True`, so it cannot forge control tokens.

SentencePiece-style tokenizers (Llama-2, Mistral) prepend a word-start marker "▁" to
every text they encode; encoded whole, a rendered prompt gets it once, at the start. So
for those, pieces after the first are encoded without it, and a literal's trailing
space goes with the response that follows ("Assistant A: " + text -> "▁text"): the ids
are then those of the whole rendered text wherever no token spans a piece boundary.

`bos` (config.model.add_bos, `bos_ids`): the ids put before every rendered
conversation and judge prompt (the official code's `tokenizer.encode` adds BOS).

Loss masks are aligned with tokens: `loss_mask[i]` says token i is a target (it is
predicted from position i - 1).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Sequence

import numpy as np

from sjjax.errors import ConfigError

# Private-use characters: never produced by tokenizers' decoders or by the data.
_OPEN, _CLOSE = "\ue000", "\ue001"
_SLOT_RE = re.compile(f"{_OPEN}([a-z_0-9]+){_CLOSE}")

JUDGE_PLACEHOLDERS = ("{context}", "{response_a}", "{response_b}")


class TemplateError(ConfigError):
    """A template is unusable; the message names the config key."""


def _slot(name: str) -> str:
    return f"{_OPEN}{name}{_CLOSE}"


# --------------------------------------------------------------------------
# Judge templates
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class JudgeTemplate:
    """One principle's judge prompt.

    system: system message ("" = none, the chat template's default applies).
    user: contains {context}, {response_a}, {response_b} in that order.
    assistant_prefix: assistant text before the decision token (e.g. "Answer:").
    rationale: optional text after the decision token with {rationale_a} and
      {rationale_b} (JM-PR: principles + rationales).
    check: optional text the judge writes *before* assistant_prefix and its decision,
      with {rationale_a} and {rationale_b} (a judge that checks, then decides: at
      inference the check is generated, greedily, and the decision read after it;
      `sjjax.judge`). Not the paper's JM-PR, whose rationale follows the decision; a
      template has a rationale or a check, not both.
    """
    principle: str
    system: str
    user: str
    assistant_prefix: str = ""
    rationale: str | None = None
    check: str | None = None

    @classmethod
    def from_config(cls, principle: str, entry: Mapping) -> "JudgeTemplate":
        key = f"judge.templates.{principle}"
        if hasattr(entry, "to_dict"):  # ml_collections.ConfigDict
            entry = entry.to_dict()
        if not isinstance(entry, Mapping):
            raise TemplateError(f"config.{key}: expected a dict with system/user/assistant_prefix")
        unknown = set(entry) - {"system", "user", "assistant_prefix", "rationale", "check"}
        if unknown:
            raise TemplateError(f"config.{key}: unknown field(s) {sorted(unknown)}")
        user = entry.get("user")
        if not isinstance(user, str):
            raise TemplateError(f"config.{key}.user: missing (a string with "
                                f"{', '.join(JUDGE_PLACEHOLDERS)})")
        positions = []
        for placeholder in JUDGE_PLACEHOLDERS:
            count = user.count(placeholder)
            if count != 1:
                raise TemplateError(
                    f"config.{key}.user: principle {principle!r} needs {placeholder} exactly "
                    f"once (found {count})")
            positions.append(user.index(placeholder))
        if positions != sorted(positions):
            raise TemplateError(f"config.{key}.user: placeholders must appear in the order "
                                f"{', '.join(JUDGE_PLACEHOLDERS)}")
        rationale, check = entry.get("rationale"), entry.get("check")
        for name, text in (("rationale", rationale), ("check", check)):
            for placeholder in ("{rationale_a}", "{rationale_b}"):
                if text and placeholder not in text:
                    raise TemplateError(f"config.{key}.{name}: missing {placeholder}")
        if rationale and check:
            raise TemplateError(f"config.{key}: a rationale (after the decision) or a check "
                                f"(before it), not both")
        for text_key in ("system", "user", "assistant_prefix", "rationale", "check"):
            value = entry.get(text_key) or ""
            if _OPEN in value or _CLOSE in value:
                raise TemplateError(f"config.{key}.{text_key}: contains a reserved character")
        return cls(principle=principle, system=entry.get("system") or "", user=user,
                   assistant_prefix=entry.get("assistant_prefix") or "",
                   rationale=rationale or None, check=check or None)


def validate_judge_templates(templates: Mapping, principles: Sequence[str]) -> dict:
    """-> {principle: JudgeTemplate}; raises TemplateError naming the config key."""
    if not principles:
        raise TemplateError("config.judge.principles: at least one principle is needed")
    missing = [p for p in principles if p not in templates]
    if missing:
        raise TemplateError(f"config.judge.principles: no template for {missing} "
                            f"(config.judge.templates has {sorted(templates)})")
    return {p: JudgeTemplate.from_config(p, templates[p]) for p in principles}


# --------------------------------------------------------------------------
# Judge prompt texts (config.judge.templates: principle -> {system, user,
# assistant_prefix[, rationale]})
# --------------------------------------------------------------------------

def default_judge_templates() -> dict:
    """The default judge template (`sjjax.config.base_config`): one principle,
    helpfulness, with an optional rationale after the decision token."""
    return {
        "helpfulness": {
            "system": "",
            "user": ("Which response is better? Judge by helpfulness and correctness.\n\n"
                     "[Conversation]\n{context}\n\n[Response A]\n{response_a}\n\n"
                     "[Response B]\n{response_b}\n\nAnswer with A or B."),
            "assistant_prefix": "Answer:",
            "rationale": "\nRationale for A: {rationale_a}\nRationale for B: {rationale_b}",
        },
    }


PRINCIPLE_DESCRIPTIONS = {
    "helpfulness": "helpfulness: does the response address the request usefully and correctly?",
    "honesty": "honesty: does the response express uncertainty where it should, and avoid "
               "claims it cannot support?",
    "instruction_following": "instruction following: does the response do what was asked, "
                             "in the requested form?",
    "truthfulness": "truthfulness: is the response free of fabricated or false information?",
}


def principle_judge_templates(principles=tuple(PRINCIPLE_DESCRIPTIONS)) -> dict:
    """One template per principle (the paper's JM-PR setting with UltraFeedback): the
    principle in the system text, and a rationale after the decision token."""
    base = default_judge_templates()["helpfulness"]
    return {p: dict(base, system=f"You judge responses by {PRINCIPLE_DESCRIPTIONS[p]}",
                    user=base["user"].replace("by helpfulness and correctness",
                                              f"by {p.replace('_', ' ')}"))
            for p in principles}


# A short judge prompt for the tiny preset's from-scratch model (short sequences).
COMPACT_JUDGE_TEMPLATE = {"helpfulness": dict(
    system="", user="{context}\n\nA: {response_a}\nB: {response_b}\nWhich is right?",
    assistant_prefix="Answer:")}
# The same with each response's check after the decision (JM-PR; synthetic data gives
# them with `rationales`): the target is " A\nA: 83 is not in the question.\nB: ..."
COMPACT_JUDGE_TEMPLATE_RATIONALE = {"helpfulness": dict(
    COMPACT_JUDGE_TEMPLATE["helpfulness"], rationale="\nA: {rationale_a}\nB: {rationale_b}")}
# The same checks written *before* the decision (a judge that checks, then decides): the
# assistant turn is "A: 83 is not in the question.\nB: 85 is in the question and the
# largest.\nAnswer: B".
COMPACT_JUDGE_TEMPLATE_CHECK = {"helpfulness": dict(
    COMPACT_JUDGE_TEMPLATE["helpfulness"], check="A: {rationale_a}\nB: {rationale_b}\n")}


# --------------------------------------------------------------------------
# Piece-wise encoding
# --------------------------------------------------------------------------

ADD_BOS = ("never", "tokenizer")


def bos_ids(tokenizer, add_bos: str = "never") -> tuple[int, ...]:
    """config.model.add_bos -> the ids put before every rendered text: () for "never";
    for "tokenizer", what the tokenizer's own `add_special_tokens=True` puts first (e.g.
    Llama-2's BOS under add_bos_token=True; () for a tokenizer that adds none)."""
    if add_bos not in ADD_BOS:
        raise ConfigError(f"config.model.add_bos: {add_bos!r} is not one of {ADD_BOS}")
    if add_bos == "never":
        return ()
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    n = len(full) - len(plain)
    return tuple(full[:n]) if n > 0 and full[n:n + len(plain)] == plain else ()


def _has_word_prefix(tokenizer) -> bool:
    """Whether the tokenizer prepends SentencePiece's "▁" to every text it encodes."""
    ids = tokenizer("a", add_special_tokens=False)["input_ids"]
    return bool(ids) and tokenizer.convert_ids_to_tokens(ids[:1])[0].startswith("\u2581")


class PieceEncoder:
    """Renders a conversation through the tokenizer's chat template with slots and
    tokenizes it piece by piece."""

    def __init__(self, tokenizer, end_of_turn: str | None = None, bos: Sequence[int] = ()):
        if not getattr(tokenizer, "chat_template", None):
            raise TemplateError("tokenizer has no chat template; set one in the config "
                                "(config.model.chat_template, a Jinja template; e.g. the "
                                "paper presets use sjjax.presets.paper.OFFICIAL_CHAT_TEMPLATE)")
        self.tokenizer = tokenizer
        self.end_of_turn = end_of_turn or tokenizer.eos_token
        self.bos = list(bos)
        self.word_prefix = _has_word_prefix(tokenizer)
        self._anchor = (tokenizer("\n", add_special_tokens=False)["input_ids"]
                        if self.word_prefix else [])
        self._cache: dict[tuple[str, bool], list[int]] = {}
        self._recent: dict[str, list[int]] = {}

    def _encode(self, text: str, split_special: bool) -> list[int]:
        """Ids of `text` as it reads inside a longer text (no "▁" prepended)."""
        kwargs = dict(add_special_tokens=False, split_special_tokens=split_special)
        if not self.word_prefix:
            return self.tokenizer(text, **kwargs)["input_ids"]
        ids = self.tokenizer("\n" + text, **kwargs)["input_ids"]
        if ids[:len(self._anchor)] != self._anchor:
            raise TemplateError(f"the tokenizer merges a newline with {text[:20]!r}: cannot "
                                f"encode the template by pieces")
        return ids[len(self._anchor):]

    def literal(self, text: str, first: bool = False) -> list[int]:
        """Template text: special tokens (<|im_start|> ...) are recognised. `first`: the
        start of a rendered text (BOS, and the tokenizer's own "▁" where it adds one)."""
        key = (text, first)
        if key not in self._cache:
            if first:
                ids = self.bos + self.tokenizer(text, add_special_tokens=False)["input_ids"]
            else:
                ids = self._encode(text, False)
            self._cache[key] = ids
        return self._cache[key]

    def content(self, text: str) -> list[int]:
        """User/model text: special-token strings inside it stay plain text.

        The last few texts are memoised: the two orders of a judged pair tokenize the
        same context and responses. The returned list is shared: do not modify it."""
        if not text:
            return []
        ids = self._recent.get(text)
        if ids is None:
            if len(self._recent) >= 16:
                self._recent.clear()
            ids = self._recent[text] = self._encode(text, True)
        return ids

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> list:
        """-> alternating [literal str, slot name, literal str, ...] (starts and ends
        with a literal, possibly empty)."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)
        parts = _SLOT_RE.split(text)
        if len(parts) % 2 != 1:
            raise TemplateError("chat template output could not be split into pieces")
        return parts

    def split_end_of_turn(self, literal: str) -> tuple[str, str]:
        """Splits the literal after an assistant turn into (end-of-turn, rest)."""
        if self.end_of_turn and self.end_of_turn in literal:
            cut = literal.index(self.end_of_turn) + len(self.end_of_turn)
            return literal[:cut], literal[cut:]
        return "", literal


@dataclasses.dataclass
class Encoded:
    """Token ids [n] and loss mask [n] (True = token is a training target)."""
    tokens: np.ndarray
    loss_mask: np.ndarray

    def __len__(self):
        return len(self.tokens)


def _concat(pieces: list[tuple[list[int], bool]]) -> Encoded:
    tokens = [t for ids, _ in pieces for t in ids]
    mask = [flag for ids, flag in pieces for _ in ids]
    return Encoded(np.asarray(tokens, np.int32), np.asarray(mask, bool))


class ChatEncoder:
    """SFT conversations and generation prompts through the chat template."""

    def __init__(self, tokenizer, end_of_turn: str | None = None, bos: Sequence[int] = ()):
        self.pieces = PieceEncoder(tokenizer, end_of_turn, bos)

    def _render(self, messages, add_generation_prompt):
        for i, m in enumerate(messages):
            if m.get("role") not in ("system", "user", "assistant"):
                raise ValueError(f"message {i}: role {m.get('role')!r} is not "
                                 f"system/user/assistant")
            if not isinstance(m.get("content"), str):
                raise ValueError(f"message {i}: content must be a string")
        slotted = [{"role": m["role"], "content": _slot(f"m{i}")} for i, m in enumerate(messages)]
        return self.pieces.render(slotted, add_generation_prompt)

    def encode_conversation(self, messages: list[dict]) -> tuple[Encoded, list[int]]:
        """Loss on every assistant turn (content + end-of-turn token).

        -> (Encoded, turn_starts) where turn_starts[i] is the token index where
        message i's content starts (used for truncation)."""
        parts = self._render(messages, add_generation_prompt=False)
        pieces: list[tuple[list[int], bool]] = [(self.pieces.literal(parts[0], first=True),
                                                 False)]
        starts = []
        n = len(pieces[0][0])
        for j in range(1, len(parts), 2):
            index = int(parts[j][1:])
            message = messages[index]
            is_assistant = message["role"] == "assistant"
            ids = self.pieces.content(message["content"])
            starts.append(n)
            pieces.append((ids, is_assistant))
            literal = parts[j + 1]
            if is_assistant:
                eot, literal = self.pieces.split_end_of_turn(literal)
                pieces.append((self.pieces.literal(eot), True))
            pieces.append((self.pieces.literal(literal), False))
            n = sum(len(ids) for ids, _ in pieces)
        return _concat(pieces), starts

    def encode_prompt(self, messages: list[dict]) -> np.ndarray:
        """Ids of a prompt ending with the assistant header (generation prompt)."""
        parts = self._render(messages, add_generation_prompt=True)
        ids = list(self.pieces.literal(parts[0], first=True))
        for j in range(1, len(parts), 2):
            ids += self.pieces.content(messages[int(parts[j][1:])]["content"])
            ids += self.pieces.literal(parts[j + 1])
        return np.asarray(ids, np.int32)


# --------------------------------------------------------------------------
# Judge prompts
# --------------------------------------------------------------------------

def resolve_judge_tokens(tokenizer, tokens: Sequence[str]) -> tuple[int, int]:
    """(" A", " B") -> two distinct single token ids, or a clear error."""
    ids = []
    for text in tokens:
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            pieces = tokenizer.convert_ids_to_tokens(encoded)
            raise TemplateError(
                f"config.judge.tokens: {text!r} is not a single token; it tokenizes to "
                f"{len(encoded)} tokens {pieces} (ids {encoded}); pick two strings that are "
                f"one token each for this tokenizer (e.g. ' A', ' B')")
        ids.append(encoded[0])
    if ids[0] == ids[1]:
        raise TemplateError(f"config.judge.tokens: {tokens[0]!r} and {tokens[1]!r} are the "
                            f"same token (id {ids[0]})")
    return ids[0], ids[1]


@dataclasses.dataclass
class JudgePrompt:
    """A judge prompt for one principle and one order, by pieces.

    prefix: everything up to where the first response starts (chat header, system,
      instructions, context) - identical for both orders of a pair.
    suffix: first response, text between, second response, end of the user turn,
      assistant header and prefix. The decision token is predicted after it; for a
      check template the suffix ends with the assistant header, where the check is
      written (`JudgePromptBuilder.check_ids` then leads to the decision).
    """
    prefix: list[int]
    suffix: list[int]
    context_trimmed: int = 0     # context tokens dropped from the left
    responses_trimmed: int = 0   # response tokens dropped from the right

    @property
    def ids(self) -> np.ndarray:
        return np.asarray(self.prefix + self.suffix, np.int32)


class JudgePromptBuilder:
    """Builds judge prompts (online judging) and judge training examples (JSFT) from
    the same pieces, so both see the same token layout."""

    def __init__(self, tokenizer, templates: Mapping[str, JudgeTemplate],
                 judge_tokens: Sequence[str] = (" A", " B"), end_of_turn: str | None = None,
                 bos: Sequence[int] = (), target_eos: bool = True):
        """target_eos (config.data.judge_target_eos): the training target ends with the
        end-of-turn token (True) or stops after the decision (and rationale)."""
        self.tokenizer = tokenizer
        self.templates = dict(templates)
        self.token_ids = resolve_judge_tokens(tokenizer, judge_tokens)
        self.pieces = PieceEncoder(tokenizer, end_of_turn, bos)
        self.target_eos = target_eos
        self._literals = {p: self._literal_pieces(t) for p, t in self.templates.items()}

    @classmethod
    def from_config(cls, tokenizer, judge_config, bos: Sequence[int] = (),
                    target_eos: bool = True) -> "JudgePromptBuilder":
        templates = validate_judge_templates(judge_config.templates, judge_config.principles)
        return cls(tokenizer, templates, tuple(judge_config.tokens), bos=bos,
                   target_eos=target_eos)

    @property
    def principles(self) -> list[str]:
        return list(self.templates)

    def _literal_pieces(self, t: JudgeTemplate):
        user = (t.user.replace("{context}", _slot("context"))
                .replace("{response_a}", _slot("first")).replace("{response_b}", _slot("second")))
        check = _slot("check") if t.check else ""
        messages = ([{"role": "system", "content": t.system}] if t.system else []) + [
            {"role": "user", "content": user},
            {"role": "assistant", "content": check + t.assistant_prefix + _slot("target")}]
        parts = self.pieces.render(messages)
        names = parts[1::2]
        expected = ["context", "first", "second"] + (["check"] if t.check else []) + ["target"]
        if names != expected:
            raise TemplateError(f"config.judge.templates.{t.principle}: the chat template "
                                f"reordered or dropped the judge slots ({names})")
        eot, _ = self.pieces.split_end_of_turn(parts[-1])
        literal = self.pieces.literal
        # A check template: the prompt ends with the assistant header (where the check is
        # written); assistant_prefix follows the check.
        after_check = literal(parts[8]) if t.check else []
        # SentencePiece-style: a literal's trailing spaces lead the text that follows.
        leads = {}
        for i, slot in ((0, "context"), (2, "first"), (4, "second")):
            text = parts[i]
            if self.pieces.word_prefix and text.endswith(" "):
                parts[i] = text.rstrip(" ")
                leads[slot] = text[len(parts[i]):]
        return dict(before_context=literal(parts[0], first=True),
                    before_first=literal(parts[2]), between=literal(parts[4]),
                    before_target=literal(parts[6]), after_check=after_check,
                    end_of_turn=literal(eot), leads=leads)

    def prompt(self, principle: str, context: str, first: str, second: str,
               max_length: int | None = None, on_overflow: str = "trim_responses"
               ) -> JudgePrompt | None:
        """The prompt judging `first` (shown as A) against `second` (shown as B).

        Over max_length, the context is trimmed from the left; if that is not enough,
        `on_overflow="trim_responses"` trims the longer response(s) from the right,
        `"drop"` returns None.
        """
        lit = self._literals[principle]
        lead = lit["leads"].get
        ctx = self.pieces.content(lead("context", "") + context)
        a = self.pieces.content(lead("first", "") + first)
        b = self.pieces.content(lead("second", "") + second)
        fixed = (len(lit["before_context"]) + len(lit["before_first"]) + len(lit["between"])
                 + len(lit["before_target"]))
        context_trimmed = responses_trimmed = 0
        if max_length is not None:
            budget = max_length - fixed - len(a) - len(b)
            if budget < len(ctx):
                context_trimmed = len(ctx) - max(budget, 0)
                ctx = ctx[context_trimmed:]
            if budget < 0:
                if on_overflow == "drop":
                    return None
                a, b, responses_trimmed = _trim_longest(a, b, max_length - fixed)
        prefix = lit["before_context"] + ctx + lit["before_first"]
        suffix = a + lit["between"] + b + lit["before_target"]
        return JudgePrompt(prefix, suffix, context_trimmed, responses_trimmed)

    def target(self, chosen_first: bool, rationale_first: str | None = None,
               rationale_second: str | None = None, principle: str | None = None) -> list[int]:
        """[check, assistant_prefix,] decision token (A if the chosen response is shown
        first), optional rationale, end-of-turn (unless target_eos is False)."""
        principle = principle or self.principles[0]
        template = self.templates[principle]
        ids = []
        if template.check:
            if rationale_first is None or rationale_second is None:
                raise TemplateError(f"config.judge.templates.{principle}.check: the judgment "
                                    f"has no rationales to write as its check")
            ids += self.check_ids(principle, template.check.format(
                rationale_a=rationale_first, rationale_b=rationale_second))
        ids.append(self.token_ids[0] if chosen_first else self.token_ids[1])
        if template.rationale and rationale_first is not None and rationale_second is not None:
            text = template.rationale.format(rationale_a=rationale_first,
                                             rationale_b=rationale_second)
            ids += self.pieces.content(text)
        return ids + (self._literals[principle]["end_of_turn"] if self.target_eos else [])

    def checks(self, principle: str | None = None) -> bool:
        """Whether the judge of `principle` (default: the first) writes a check before
        its decision."""
        return bool(self.templates[principle or self.principles[0]].check)

    def check_ids(self, principle: str, check_text: str) -> list[int]:
        """What follows a check template's prompt before the decision token: the check
        text, then assistant_prefix."""
        return self.pieces.content(check_text) + self._literals[principle]["after_check"]

    def training_example(self, principle: str, context: str, chosen: str, rejected: str,
                         chosen_first: bool, rationale_chosen: str | None = None,
                         rationale_rejected: str | None = None,
                         max_length: int | None = None, on_overflow: str = "drop"):
        """A JSFT judgment example -> (Encoded, JudgePrompt) or None if it cannot fit."""
        first, second = (chosen, rejected) if chosen_first else (rejected, chosen)
        r_first, r_second = ((rationale_chosen, rationale_rejected) if chosen_first
                             else (rationale_rejected, rationale_chosen))
        target = self.target(chosen_first, r_first, r_second, principle)
        budget = None if max_length is None else max_length - len(target)
        if budget is not None and budget <= 0:
            return None
        prompt = self.prompt(principle, context, first, second, budget, on_overflow)
        if prompt is None:
            return None
        encoded = _concat([(prompt.prefix + prompt.suffix, False), (target, True)])
        return encoded, prompt


def _trim_longest(a: list[int], b: list[int], budget: int):
    """Trims the longer of two responses (from the right) until both fit in budget;
    once they are equally long, both (a gets budget // 2, b the rest)."""
    budget = max(budget, 2)
    la, lb = len(a), len(b)
    if la + lb <= budget:
        return a, b, 0
    if 2 * lb <= budget:
        na, nb = budget - lb, lb
    elif 2 * la <= budget:
        na, nb = la, budget - la
    else:
        na, nb = budget // 2, budget - budget // 2
    return a[:na], b[:nb], la + lb - na - nb
