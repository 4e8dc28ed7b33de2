"""config.data -> tokenized examples stored as a TFDS array_record dataset -> batches.

    data = datasets.prepare(config, tokenizer, mode="jsft")   # builds once, then reuses
    stream = datasets.make_stream(config, data, pad_id=tokenizer.pad_token_id)
    batch = next(stream); state = stream.get_state()            # see sjjax.data.batching

The dataset is written with a `tfds.core.GeneratorBasedBuilder` in the array_record
file format and read back with `as_data_source()` (random access). Neither needs
TensorFlow: with tensorflow-datasets 4.9.10 and no TF installed, `download_and_prepare`
(array_record) and `as_data_source` work, while `tfds.load` / `as_dataset` need TF.
Records keep their generation order (`disable_shuffling=True`; the batcher shuffles),
and the example lengths (for bucketing) and the read/construction counts are stored in
the dataset's metadata (`metadata.json`), so a reader needs neither the tokenizer nor a
pass over the records.

The builder config name is `<mode>_<fingerprint>`: a hash of everything that changes
the tokens (sources and their file sizes/mtimes, read options, max_length, mixing,
judge templates and tokens, the tokenizer, `CODE_VERSION`), so a changed input builds
a new dataset instead of silently reusing a stale one.

Multi-host: call `prepare` on one process (or on each host with a host-local
`config.data.tfds_dir`) before the others `load_prepared` the directory.

Record features: JSFT {tokens int32 [n], loss_mask bool [n], kind int8 (0 sft,
1 judge), source str}; DPO {chosen_tokens, chosen_loss_mask, rejected_tokens,
rejected_loss_mask, source}.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from typing import Callable, Sequence

import numpy as np
import tensorflow_datasets as tfds

# config.data: schema and checks in sjjax.config (also importable from here)
from sjjax.config import default_data_config, validate_data_config  # noqa: F401
from sjjax.data import batching, examples as examples_lib
from sjjax.data.examples import KIND_IDS, Example, PrefPair
from sjjax.errors import ConfigError, DataError
from sjjax.phases import DATA_PHASES  # sft: the JSFT sources' conversations only

log = logging.getLogger(__name__)

CODE_VERSION = "1"   # bump when example construction changes the tokens it produces


# --------------------------------------------------------------------------
# Records <-> examples
# --------------------------------------------------------------------------

def as_record(item: Example | PrefPair) -> dict:
    """An Example or PrefPair -> the feature dict stored (and read back) per record."""
    if isinstance(item, PrefPair):
        return dict(chosen_tokens=item.chosen.tokens, chosen_loss_mask=item.chosen.loss_mask,
                    rejected_tokens=item.rejected.tokens,
                    rejected_loss_mask=item.rejected.loss_mask, source=item.source)
    return dict(tokens=item.tokens, loss_mask=item.loss_mask, kind=KIND_IDS[item.kind],
                source=item.source)


def as_records(items: Sequence[Example | PrefPair]) -> tuple[list[dict], np.ndarray]:
    """In-memory records and lengths [N] for `BatchStream` (no TFDS)."""
    return [as_record(x) for x in items], np.asarray([len(x) for x in items], np.int64)


def _features(mode: str) -> tfds.features.FeaturesDict:
    tokens = dict(shape=(None,), dtype=np.int32)
    mask = dict(shape=(None,), dtype=np.bool_)
    if mode in ("jsft", "sft"):
        spec = dict(tokens=tfds.features.Tensor(**tokens),
                    loss_mask=tfds.features.Tensor(**mask),
                    kind=tfds.features.Scalar(dtype=np.int8))
    else:
        spec = dict(chosen_tokens=tfds.features.Tensor(**tokens),
                    chosen_loss_mask=tfds.features.Tensor(**mask),
                    rejected_tokens=tfds.features.Tensor(**tokens),
                    rejected_loss_mask=tfds.features.Tensor(**mask))
    return tfds.features.FeaturesDict(dict(spec, source=tfds.features.Text()))


def build_examples(config, tokenizer, mode: str = "jsft") -> tuple[list, dict]:
    """Reads config.data.sources and builds JSFT examples or DPO pairs.
    -> (items, stats dict with per-source read stats and example stats)."""
    from sjjax.data.templates import ChatEncoder, JudgePromptBuilder, bos_ids
    data = config.data
    from sjjax.data import sources as sources_lib
    records = sources_lib.read_sources(data.sources, data.on_bad_record)
    bos = bos_ids(tokenizer, config.model.get("add_bos", "never")) if "model" in config else ()
    chat = ChatEncoder(tokenizer, bos=bos)
    if mode in ("jsft", "sft"):
        judge = JudgePromptBuilder.from_config(tokenizer, config.judge, bos=bos,
                                               target_eos=data.get("judge_target_eos", True))
        judgments = records.judgments if mode == "jsft" else []
        items, stats = examples_lib.build_jsft_examples(
            records.conversations, judgments, chat, judge, data.max_length,
            data.sft_per_judge if mode == "jsft" else None, data.seed)
    elif mode == "dpo":
        items, stats = examples_lib.build_dpo_pairs(records.judgments, chat, data.max_length)
    else:
        raise ConfigError(f"mode {mode!r} is not one of {DATA_PHASES}")
    return items, dict(sources=[s.as_dict() for s in records.stats], examples=stats.as_dict())


# --------------------------------------------------------------------------
# TFDS
# --------------------------------------------------------------------------

class SjjaxExamples(tfds.core.GeneratorBasedBuilder):
    """Tokenized sjjax examples; `make_examples() -> (items, stats)` supplies them."""

    VERSION = tfds.core.Version("1.0.0")
    # tfds 4.9.10 locates a builder's source file (for download checksums, which we do
    # not use) through the optional package importlib_resources; skip that lookup.
    code_path = None

    def __init__(self, *, mode: str, make_examples: Callable | None = None, **kwargs):
        if mode not in DATA_PHASES:
            raise ConfigError(f"mode {mode!r} is not one of {DATA_PHASES}")
        self._mode, self._make = mode, make_examples
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=f"sjjax {self._mode} examples (token ids, loss masks)",
            features=_features(self._mode), metadata=tfds.core.MetadataDict(),
            disable_shuffling=True)

    def _split_generators(self, dl_manager):
        if self._make is None:
            raise DataError(f"{self.data_dir}: dataset not prepared and nothing to build it "
                            f"from")
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        items, stats = self._make()
        if not items:
            raise DataError(f"no examples were built (stats: {json.dumps(stats)[:2000]})")
        lengths = []
        for i, item in enumerate(items):
            lengths.append(len(item))
            yield i, as_record(item)
        self.info.metadata.update(mode=self._mode, lengths=lengths, stats=stats)


def _file_identity(path: str) -> list:
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def _tokenizer_identity(tokenizer) -> dict:
    probe = "Hello <|im_start|> world\n\n User: 123 ünï 𝄞"
    return dict(cls=type(tokenizer).__name__, size=len(tokenizer),
                chat_template=getattr(tokenizer, "chat_template", None),
                eos=tokenizer.eos_token,
                probe=tokenizer(probe, add_special_tokens=False)["input_ids"])


def fingerprint(config, tokenizer, mode: str) -> str:
    """16 hex digits over everything that changes the built examples."""
    data = config.data
    sources = []
    for spec in data.sources:
        spec = dict(spec)
        files = {k: _file_identity(spec[k]) for k in ("path", "rejected_path")
                 if spec.get(k) and os.path.exists(spec[k])}
        sources.append(dict(spec=spec, files=files))
    content = dict(code=CODE_VERSION, mode=mode, sources=sources,
                   on_bad_record=data.on_bad_record, max_length=data.max_length,
                   tokenizer=_tokenizer_identity(tokenizer))
    if mode in ("jsft", "sft"):
        judge = config.judge
        content.update(sft_per_judge=data.sft_per_judge, seed=data.seed,
                       judge=dict(tokens=list(judge.tokens), principles=list(judge.principles),
                                  templates=judge.templates.to_dict()
                                  if hasattr(judge.templates, "to_dict") else
                                  dict(judge.templates)))
    # Options that change the tokens, only when not at their defaults (so datasets built
    # before the options existed keep their names).
    if "model" in config and config.model.get("add_bos", "never") != "never":
        content["add_bos"] = config.model.add_bos
    if mode in ("jsft", "sft") and not data.get("judge_target_eos", True):
        content["judge_target_eos"] = False
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass
class Prepared:
    """A built dataset: records[i] -> feature dict, lengths [N], stats, where it lives."""
    records: object
    lengths: np.ndarray
    stats: dict
    mode: str
    directory: str

    def __len__(self) -> int:
        return len(self.lengths)


def load_prepared(directory: str) -> Prepared:
    """Reads a built dataset back (no tokenizer, no TensorFlow)."""
    builder = tfds.builder_from_directory(directory)
    meta = builder.info.metadata or {}
    if "lengths" not in meta:
        raise DataError(f"{directory}: not an sjjax examples dataset (no lengths metadata)")
    records = builder.as_data_source()["train"]
    lengths = np.asarray(meta["lengths"], np.int64)
    if len(records) != len(lengths):
        raise DataError(f"{directory}: {len(records)} records but {len(lengths)} lengths")
    return Prepared(records, lengths, dict(meta.get("stats", {})), meta["mode"],
                    str(directory))


def write_examples(items: Sequence, *, mode: str, name: str, data_dir: str,
                   stats: dict | None = None) -> Prepared:
    """Stores already built items (Examples or PrefPairs) as dataset `name` (reused if it
    exists: make `name` unique to the content)."""
    builder = SjjaxExamples(mode=mode, make_examples=lambda: (list(items), stats or {}),
                            data_dir=data_dir, file_format="array_record",
                            config=tfds.core.BuilderConfig(name=name))
    builder.download_and_prepare()
    return load_prepared(builder.data_dir)


def prepare(config, tokenizer, mode: str = "jsft", data_dir: str | None = None) -> Prepared:
    """Builds the dataset for config.data (once per fingerprint) and loads it."""
    validate_data_config(config.data)
    name = f"{mode}_{fingerprint(config, tokenizer, mode)}"
    builder = SjjaxExamples(mode=mode, make_examples=lambda: build_examples(config, tokenizer,
                                                                            mode),
                            data_dir=data_dir or config.data.tfds_dir,
                            file_format="array_record", config=tfds.core.BuilderConfig(
                                name=name, description=f"sjjax {mode} examples"))
    builder.download_and_prepare()
    prepared = load_prepared(builder.data_dir)
    built = prepared.stats.get("examples", {})
    log.info("%s: %d %s records (built %s, truncated %s, dropped %s)", prepared.directory,
             len(prepared), mode, built.get("built"), built.get("truncated"),
             built.get("dropped"))
    return prepared


def make_stream(config, prepared: Prepared, pad_id: int, process_index: int | None = None,
                process_count: int | None = None) -> batching.BatchStream:
    """This host's resumable batch stream over a prepared dataset."""
    data = config.data
    return batching.BatchStream(
        prepared.records, prepared.lengths, batch_size=data.batch_size, buckets=data.buckets,
        seed=data.seed, pad_id=pad_id, pairs=prepared.mode == "dpo",
        mix=bool(data.get("mix_batches", False)),
        num_epochs=data.num_epochs, drop_remainder=data.drop_remainder,
        process_index=process_index, process_count=process_count,
        num_threads=data.num_threads, prefetch=data.prefetch)
