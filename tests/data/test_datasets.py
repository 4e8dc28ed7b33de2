"""TFDS array_record storage (no TensorFlow) and the resumable, bucketed batch stream."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from sjjax.config import base_config
from sjjax.data import batching, datasets
from sjjax.data.examples import Example, PrefPair
from sjjax.errors import ConfigError, DataError
from tests.data.conftest import write_lines

BUCKETS = (16, 32, 64, 128)
PAD = 2


def synthetic_examples(n: int, seed: int = 0) -> list[Example]:
    """Example i: tokens 1000*i + [0..L), loss on odd positions, kind sft/judge."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(3, 129))
        tokens = (1000 * i + np.arange(length)).astype(np.int32)
        out.append(Example(tokens, np.arange(length) % 2 == 1, ("sft", "judge")[i % 2],
                           f"synthetic:{i}"))
    return out


def synthetic_pairs(n: int) -> list[PrefPair]:
    ex = synthetic_examples(2 * n, seed=1)
    return [PrefPair(Example(ex[2 * i].tokens, ex[2 * i].loss_mask, "pref_chosen"),
                     Example(ex[2 * i + 1].tokens, ex[2 * i + 1].loss_mask, "pref_rejected"),
                     f"pair:{i}") for i in range(n)]


def stream(items, batch_size=4, **kwargs) -> batching.BatchStream:
    records, lengths = datasets.as_records(items)
    kwargs.setdefault("process_index", 0)
    kwargs.setdefault("process_count", 1)
    return batching.BatchStream(records, lengths, batch_size=batch_size, buckets=BUCKETS,
                                seed=kwargs.pop("seed", 3), pad_id=PAD, **kwargs)


def assert_same_batches(a: list[dict], b: list[dict]):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


# --------------------------------------------------------------------------
# TFDS
# --------------------------------------------------------------------------

def test_tfds_roundtrip_without_tensorflow(tmp_path):
    items = synthetic_examples(30)
    prepared = datasets.write_examples(items, mode="jsft", name="roundtrip",
                                       data_dir=str(tmp_path), stats={"note": 1})
    assert "tensorflow" not in sys.modules
    assert len(prepared) == 30 and prepared.mode == "jsft" and prepared.stats == {"note": 1}
    assert prepared.lengths.tolist() == [len(x) for x in items]
    again = datasets.load_prepared(prepared.directory)  # without the builder's class inputs
    for i in (0, 7, 29):  # records keep their generation order
        record = again.records[i]
        np.testing.assert_array_equal(record["tokens"], items[i].tokens)
        np.testing.assert_array_equal(record["loss_mask"], items[i].loss_mask)
        assert record["kind"] == i % 2 and record["source"] == f"synthetic:{i}".encode()

    pairs = synthetic_pairs(5)
    prepared = datasets.write_examples(pairs, mode="dpo", name="pairs", data_dir=str(tmp_path))
    record = prepared.records[3]
    np.testing.assert_array_equal(record["rejected_tokens"], pairs[3].rejected.tokens)
    assert prepared.lengths[3] == max(len(pairs[3].chosen), len(pairs[3].rejected))


def test_prepare_from_config_builds_once(tmp_path, tokenizer, monkeypatch):
    good = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.",
            "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}
    path = write_lines(tmp_path / "hh.jsonl", [json.dumps(good), "{broken",
                                               json.dumps(good)])
    config = base_config("jsft")
    config.data = datasets.default_data_config()
    config.data.sources = ({"format": "hh_rlhf", "path": path},)
    config.data.on_bad_record = "skip"
    config.data.max_length, config.data.buckets = 128, BUCKETS
    items, _ = datasets.build_examples(config, tokenizer, "jsft")
    prepared = datasets.prepare(config, tokenizer, "jsft", data_dir=str(tmp_path / "tfds"))
    assert len(prepared) == len(items) == 2 + 4   # 2 SFT + 2 judgments x 2 orders
    assert prepared.stats["sources"][0]["skipped"] == {"malformed_json": 1}
    assert prepared.stats["examples"]["built"] == {"sft": 2, "judge": 4}
    for i, item in enumerate(items):
        np.testing.assert_array_equal(prepared.records[i]["tokens"], item.tokens)

    def no_rebuild(*args):
        raise AssertionError("rebuilt an existing dataset")
    monkeypatch.setattr(datasets, "build_examples", no_rebuild)
    assert datasets.prepare(config, tokenizer, "jsft",
                            data_dir=str(tmp_path / "tfds")).directory == prepared.directory
    config.data.max_length = 64   # changes the examples: a new dataset
    with pytest.raises(AssertionError, match="rebuilt"):
        datasets.prepare(config, tokenizer, "jsft", data_dir=str(tmp_path / "tfds"))


def test_data_config_validation():
    config = base_config("jsft")
    config.data = datasets.default_data_config()
    config.data.sources = ({"format": "hh_rlhf", "path": "x.jsonl"},)
    datasets.validate_data_config(config.data)
    config.data.max_length = 4096
    with pytest.raises(ConfigError, match=r"config\.data\.max_length: 4096 must be in "
                                          r"\(0, largest bucket 2048\]"):
        datasets.validate_data_config(config.data)
    config.data.max_length = 512
    config.data.sources = ({"format": "csv", "path": "x"},)
    with pytest.raises(ConfigError, match=r"config\.data\.sources\[0\]\.format"):
        datasets.validate_data_config(config.data)


# --------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------

def test_epoch_plan_covers_every_example_once_in_fixed_shapes():
    items = synthetic_examples(103)
    lengths = np.asarray([len(x) for x in items])
    counts = np.bincount(np.searchsorted(BUCKETS, lengths), minlength=len(BUCKETS))
    planner = batching.EpochPlanner(lengths, BUCKETS, 8, seed=3)
    assert planner.batches_per_epoch == int(sum(-(-c // 8) for c in counts))
    orders = []
    for epoch in (0, 1):
        indices, bucket_lengths = planner.plan(epoch)
        real = indices[indices >= 0]
        assert sorted(real.tolist()) == list(range(103))   # each example exactly once
        for rows, T in zip(indices, bucket_lengths):
            rows = rows[rows >= 0]
            # the smallest bucket that holds the batch's examples
            assert T == min(b for b in BUCKETS if b >= lengths[rows].max())
            assert all(np.searchsorted(BUCKETS, lengths[rows]) == BUCKETS.index(T))
        orders.append(real.tolist())
    assert orders[0] != orders[1]
    dropped = batching.EpochPlanner(lengths, BUCKETS, 8, seed=3, drop_remainder=True)
    indices, _ = dropped.plan(0)
    assert len(indices) == int(sum(c // 8 for c in counts)) and (indices >= 0).all()


def test_batch_format():
    items = synthetic_examples(10)
    batch = next(stream(items, batch_size=4))
    assert set(batch) == {"tokens", "mask", "loss_mask", "kind", "index"}
    B, T = batch["tokens"].shape
    assert B == 4 and T in BUCKETS and batch["tokens"].dtype == np.int32
    assert batch["kind"].dtype == np.int8 and batch["mask"].dtype == bool
    for r, i in enumerate(batch["index"]):
        if i < 0:
            assert not batch["mask"][r].any() and batch["kind"][r] == -1
            continue
        x, n = items[i], len(items[i])
        np.testing.assert_array_equal(batch["tokens"][r, :n], x.tokens)
        assert (batch["tokens"][r, n:] == PAD).all()                  # right-padded
        assert batch["mask"][r].tolist() == [True] * n + [False] * (T - n)
        np.testing.assert_array_equal(batch["loss_mask"][r, :n], x.loss_mask)
        assert not batch["loss_mask"][r, n:].any() and batch["kind"][r] == i % 2


def test_resumed_stream_yields_the_same_batches():
    items = synthetic_examples(41)
    reference = stream(items)
    n = 2 * reference.batches_per_epoch + 3      # crosses two epoch boundaries
    uninterrupted = [next(reference) for _ in range(n)]

    first = stream(items)
    k = first.batches_per_epoch - 2
    head = [next(first) for _ in range(k)]
    state = json.loads(json.dumps(first.get_state()))   # as stored in a checkpoint
    assert state["step"] == k and state["epoch"] == 0
    del first
    resumed = stream(items)                             # a fresh process
    resumed.set_state(state)
    tail = [next(resumed) for _ in range(n - k)]
    assert_same_batches(head + tail, uninterrupted)
    assert resumed.get_state()["epoch"] == 2


def test_resume_on_tfds_source(tmp_path):
    prepared = datasets.write_examples(synthetic_examples(25), mode="jsft", name="resume",
                                       data_dir=str(tmp_path))
    config = base_config("jsft")
    config.data = datasets.default_data_config()
    config.data.batch_size, config.data.buckets, config.data.num_epochs = 4, BUCKETS, None
    a = datasets.make_stream(config, prepared, PAD, 0, 1)
    uninterrupted = [next(a) for _ in range(12)]
    b = datasets.make_stream(config, prepared, PAD, 0, 1)
    head = [next(b) for _ in range(5)]
    c = datasets.make_stream(config, prepared, PAD, 0, 1)
    c.set_state(b.get_state())
    assert_same_batches(head + [next(c) for _ in range(7)], uninterrupted)


def test_finite_epochs_stop():
    s = stream(synthetic_examples(20), num_epochs=2)
    assert len(list(s)) == 2 * s.batches_per_epoch


def test_hosts_split_each_global_batch():
    items = synthetic_examples(37)
    single = stream(items, batch_size=4)
    hosts = [stream(items, batch_size=4, process_index=p, process_count=2) for p in (0, 1)]
    for _ in range(single.batches_per_epoch + 2):
        whole = next(single)
        parts = [next(h) for h in hosts]
        assert parts[0]["tokens"].shape == parts[1]["tokens"].shape == (2, whole["tokens"].shape[1])
        for key in whole:
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])
    with pytest.raises(ConfigError, match=r"config\.data\.batch_size: 4 is not divisible by "
                                          r"the number of hosts \(3\)"):
        stream(items, batch_size=4, process_index=0, process_count=3)


def test_dpo_batches_keep_pairs_together():
    pairs = synthetic_pairs(13)
    s = stream(pairs, batch_size=4, pairs=True)
    for _ in range(s.batches_per_epoch):
        batch = next(s)
        b = 4
        assert batch["tokens"].shape[0] == 2 * b
        np.testing.assert_array_equal(batch["index"][:b], batch["index"][b:])
        for r, i in enumerate(batch["index"][:b]):
            if i < 0:
                assert batch["kind"][r] == batch["kind"][b + r] == -1
                continue
            assert (batch["kind"][r], batch["kind"][b + r]) == (2, 3)
            for row, x in ((r, pairs[i].chosen), (b + r, pairs[i].rejected)):
                np.testing.assert_array_equal(batch["tokens"][row, :len(x)], x.tokens)
                np.testing.assert_array_equal(batch["loss_mask"][row, :len(x)], x.loss_mask)


def test_resume_refuses_changed_data():
    state = stream(synthetic_examples(20)).get_state()
    other = stream(synthetic_examples(21))
    with pytest.raises(DataError, match=r"cannot resume the data stream.*num_examples"):
        other.set_state(state)


def test_example_longer_than_largest_bucket():
    with pytest.raises(ConfigError, match=r"config\.data\.buckets: example 1 has 200 tokens"):
        batching.EpochPlanner([10, 200], BUCKETS, 2, seed=0)
