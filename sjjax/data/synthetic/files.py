"""The suite on disk: JSONL rows (SFT conversations, TRL-style preference pairs,
held-out prompts with their oracle `meta`), reading prompts back, and writing the
whole suite into a directory."""

from __future__ import annotations

import json
import os
from typing import Iterable, Sequence

from sjjax.data.records import Prompt, render_context
from sjjax.data.synthetic.records import LabelledPair, labelled_pairs, sft_conversations
from sjjax.data.synthetic.tasks import FAMILIES, GENERATORS, generate


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

