"""The common records every reader produces and every phase consumes.

- `Conversation`: an SFT dialogue (loss on every assistant turn).
- `Judgment`: (context, chosen, rejected) under one principle, optionally with
  rationales (JM-PR). A source with several principles yields one per principle.
  `messages` (optional) keeps the dialogue behind `context` for chat-formatted use.
- `Prompt`: a query for self-training / sampling: the messages to continue and the
  rendered context the judge sees; `meta` carries what an oracle needs.
- `EvalItem`: an instruction with a reference output (win rate).

Every record carries `source` ("file:line" or "generator:seed:index") so an error
or a surprising example can be traced back to its origin.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

Messages = tuple[dict, ...]  # ({"role": "user"|"assistant"|"system", "content": str}, ...)


@dataclasses.dataclass(frozen=True)
class Conversation:
    messages: Messages
    source: str = ""


@dataclasses.dataclass(frozen=True)
class Judgment:
    context: str
    chosen: str
    rejected: str
    principle: str = "helpfulness"
    rationale_chosen: str | None = None
    rationale_rejected: str | None = None
    source: str = ""
    # The dialogue before the responses, when the source has it (the chat-formatted
    # prompt of an offline DPO pair); None for sources that only have `context` text.
    messages: Messages | None = dataclasses.field(default=None, hash=False)


@dataclasses.dataclass(frozen=True)
class Prompt:
    messages: Messages
    context: str
    meta: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)
    source: str = ""


@dataclasses.dataclass(frozen=True)
class EvalItem:
    instruction: str
    reference: str
    source: str = ""


ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}


def render_context(messages: Sequence[dict]) -> str:
    """The judge's view of a dialogue: "User: ...\\n\\nAssistant: ..." turns, as in the
    paper's code (HH-RLHF's Human/Assistant become User/Assistant)."""
    return "\n\n".join(f"{ROLE_NAMES[m['role']]}: {m['content']}" for m in messages)


def user_turn(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant_turn(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}
