"""Config -> records for the phases: the synthetic suite as a data source, held-out
splits of file sources, prompts for self-training, and the oracle.

`config.data.sources` entries:
    {"format": "synthetic", "seed": 0, "n_sft": 400, "n_pairs": 400, "n_prompts": 64,
     "wrong_fraction": 0.2, "families": [...], "levels": [...],
     "pairs": "labelled"}   ... or "shortcut_proof" (the pairs' wrong answers: PAIR_KINDS)
    ... "rationales": True gives each pair the two responses' checks against the question
    (`synthetic.rationales.explain`) as JM-PR rationales; "restate": True has each check
    copy the question's numbers first, "answer" state the question's answer first
    {"format": "hh_rlhf", "path": ..., "split": "train", "heldout_fraction": 0.1,
     "max_records": 400, "kinds": ("conversations",)}
    ... `kinds`: which of the file's records are used (default all: conversations,
    judgments, prompts, eval_items); e.g. the official HH JSFT trains SFT on
    helpful-online without its judgments.
    ... (any reader of `readers.READERS`, each with an optional split)

A file source's split is a fixed function of each record's `source` ("file:line"),
so train and held-out never overlap and do not depend on the order of reading.
The synthetic suite has its own content-based split (see synthetic.split_of).
"""

from __future__ import annotations

import hashlib
from typing import Callable, Mapping, Sequence

from sjjax.data import readers, synthetic
from sjjax.data.readers import ReadStats, Records
from sjjax.errors import ConfigError

SPLITS = ("all", "train", "heldout")
KINDS = ("conversations", "judgments", "prompts", "eval_items")
SYNTHETIC_OPTIONS = {"seed", "n_sft", "n_pairs", "n_prompts", "wrong_fraction", "families",
                     "levels", "split", "principle", "directions", "pairs",
                     "rationales", "restate"}
# The wrong answers of a synthetic source's labelled pairs: the hand-made perturbations
# (`synthetic.labelled_pairs`, which question-blind rules solve) or the ones chosen to
# defeat those rules (`synthetic.shortcut_proof_pairs`).
PAIR_KINDS = ("labelled", "shortcut_proof")


def in_split(source: str, split: str, fraction: float) -> bool:
    if split == "all":
        return True
    digest = hashlib.sha256(f"sjjax-split|{source}".encode()).digest()
    heldout = int.from_bytes(digest[:8], "big") % 10_000 < fraction * 10_000
    return heldout if split == "heldout" else not heldout


def filter_split(records: Records, split: str, fraction: float) -> Records:
    keep = lambda r: in_split(r.source.split("|")[0], split, fraction)  # noqa: E731
    return Records([c for c in records.conversations if keep(c)],
                   [j for j in records.judgments if keep(j)],
                   [p for p in records.prompts if keep(p)],
                   [e for e in records.eval_items if keep(e)], records.stats)


def read_synthetic(spec: Mapping, key: str = "data.sources[0]",
                   split: str | None = None, wanted: Sequence[str] = KINDS) -> Records:
    """The synthetic suite as a source: SFT conversations (some wrong), labelled
    pairs and prompts, each an independent draw ("stream") of the suite. Only the
    `wanted` kinds are drawn (the others stay empty; a held-out draw of thousands of
    SFT tasks costs minutes of rejection sampling), and each stream is the same either
    way."""
    unknown = set(spec) - SYNTHETIC_OPTIONS - {"format"}
    if unknown:
        raise ConfigError(f"config.{key}: unknown option(s) {sorted(unknown)} for format "
                          f"'synthetic' (allowed: {', '.join(sorted(SYNTHETIC_OPTIONS))})")
    seed = int(spec.get("seed", 0))
    split = split or spec.get("split", "train")
    if split not in ("train", "heldout"):
        raise ConfigError(f"config.{key}.split: {split!r}; expected train or heldout")
    families = tuple(spec.get("families", synthetic.FAMILIES))
    levels = tuple(spec.get("levels", (1, 2, 3)))
    principle = spec.get("principle", "helpfulness")
    pair_kind = spec.get("pairs", "labelled")
    if pair_kind not in PAIR_KINDS:
        raise ConfigError(f"config.{key}.pairs: {pair_kind!r}; expected one of {PAIR_KINDS}")
    directions = {k: tuple(v) for k, v in dict(spec.get("directions") or {}).items()}
    rationales = spec.get("rationales", False)
    if not isinstance(rationales, bool):
        raise ConfigError(f"config.{key}.rationales: {rationales!r}; expected True or False")
    restate = spec.get("restate", False)
    if not isinstance(restate, bool) and restate != "answer":
        raise ConfigError(f"config.{key}.restate: {restate!r}; expected True, False or "
                          f"'answer'")

    def draw(n, stream):
        return (synthetic.generate(seed, int(n), split, families, levels, stream=stream,
                                   directions=directions) if n else [])

    def count(option, kind):
        return spec.get(option, 0) if kind in wanted else 0

    sft = draw(count("n_sft", "conversations"), "sft")
    pairs = draw(count("n_pairs", "judgments"), "pairs")
    prompts = draw(count("n_prompts", "prompts"), "prompts")
    stats = ReadStats(f"synthetic(seed={seed}, split={split})")
    labelled = (synthetic.labelled_pairs(pairs, seed) if pair_kind == "labelled" else
                synthetic.shortcut_proof_pairs(pairs, seed))
    judgments = [x.judgment(principle, rationales, restate) for x in labelled]
    out = Records(
        conversations=synthetic.sft_conversations(sft, float(spec.get("wrong_fraction", 0.0)),
                                                  seed),
        judgments=judgments,
        prompts=synthetic.prompts(prompts), stats=[stats])
    return out


def read_source(spec, on_bad_record: str = "raise", key: str = "data.sources[0]",
                split: str | None = None, wanted: Sequence[str] = KINDS) -> Records:
    """One source entry -> Records, restricted to its split; `wanted`: the kinds the
    caller uses (a hint: sources that can skip the others do)."""
    spec = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
    if spec.get("format") == "synthetic":
        return read_synthetic(spec, key, split, wanted)
    split = split or spec.pop("split", "all")
    spec.pop("split", None)
    fraction = float(spec.pop("heldout_fraction", 0.1))
    limit = spec.pop("max_records", None)
    kinds = tuple(spec.pop("kinds", KINDS))
    if split not in SPLITS:
        raise ConfigError(f"config.{key}.split: {split!r} is not one of {SPLITS}")
    if not kinds or set(kinds) - set(KINDS):
        raise ConfigError(f"config.{key}.kinds: {kinds} must name some of {KINDS}")
    records = filter_split(readers.read_source(spec, on_bad_record, key), split, fraction)
    if kinds != KINDS:
        records = Records(*(getattr(records, k) if k in kinds else [] for k in KINDS),
                          records.stats)
    if limit:  # the first `limit` records of each kind (a smaller budget, same data)
        records = Records(records.conversations[:limit], records.judgments[:limit],
                          records.prompts[:limit], records.eval_items[:limit], records.stats)
    return records


def read_sources(specs: Sequence, on_bad_record: str = "raise",
                 split: str | None = None, wanted: Sequence[str] = KINDS) -> Records:
    """All entries -> one Records bundle; `split` overrides every entry's own split;
    `wanted`: the kinds the caller uses (see read_source)."""
    out = Records()
    for i, spec in enumerate(specs):
        out.extend(read_source(spec, on_bad_record, f"data.sources[{i}]", split, wanted))
    return out


def load_prompts(config, split: str = "train"):
    """Prompts for sampling (self-training, tournaments, evaluation)."""
    specs = config.data.get("prompt_sources") or config.data.sources
    prompts = read_sources(specs, config.data.on_bad_record, split, ("prompts",)).prompts
    if not prompts:
        raise ConfigError(f"config.data.prompt_sources: no {split} prompts (synthetic sources "
                          f"need n_prompts > 0)")
    return prompts


def load_oracle(config) -> Callable[[dict, str], float] | None:
    """The synthetic suite's oracle when the prompts come from it, else None."""
    specs = config.data.get("prompt_sources") or config.data.sources
    formats = {(s.to_dict() if hasattr(s, "to_dict") else dict(s)).get("format") for s in specs}
    return synthetic.score if formats == {"synthetic"} else None
