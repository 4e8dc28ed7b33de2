"""Deterministic, resumable, per-host batches of fixed shapes.

Examples are grouped by length bucket (e.g. 64/128/256/512/...) so that a training
step compiles once per bucket, not once per length. The plan of an epoch (which
examples form which batch, in which order) depends only on (example lengths,
buckets, global batch size, seed, epoch):

    permutation = np.random.default_rng([seed, epoch]).permutation(N)
    walk the permutation; each example joins its bucket's open batch; a batch is
    emitted when it is full; at the end of the epoch the partial batches are emitted
    padded (bucket order), or dropped with drop_remainder=True.

With mix=True (config.data.mix_batches, the official code's random batches) the
permutation is cut into consecutive batches instead, whatever their lengths, and each
is padded to the smallest bucket holding its longest row; the last one is partial.

So the number of batches per epoch is fixed, step s is batch s % batches_per_epoch
of epoch s // batches_per_epoch, and the stream position is one integer: resuming at
step s yields exactly the batches an uninterrupted stream yields from s.

Multi-host: every host computes the same global plan; host p takes rows
[p*b, (p+1)*b) of each global batch (b = batch_size / process_count), so all hosts
see the same bucket length at the same step (one compiled program, no deadlock).

Why grain: the plan makes batch s a pure function of s, which is exactly grain's
`MapDataset` (random access by index); `to_iter_dataset(ReadOptions(...))` adds
ordered multi-threaded prefetch (decoding array_record + padding off the training
thread) without changing the order. We keep our own step counter as the state
(a JSON-able dict) instead of grain's internal iterator state, so checkpoints do not
depend on grain's state format, and a restart simply starts `MapDataset.range` at s.

Batch (numpy), JSFT: tokens [B,T] int32 (right-padded with pad_id), mask [B,T] bool
(real tokens), loss_mask [B,T] bool, kind [B] int8 (0 sft, 1 judge, -1 padding row),
index [B] int64 (example index in the source, -1 padding row).
DPO (pairs=True), b pairs per host: the same keys with 2b rows, chosen rows first
(row i and row b + i are one pair), kind 2 (chosen) / 3 (rejected) / -1.
"""

from __future__ import annotations

import threading
from typing import Sequence

import grain
import numpy as np

from sjjax.errors import ConfigError, DataError

PAD_KIND = -1
DEFAULT_BUCKETS = (64, 128, 256, 512, 1024, 2048)
_FOREVER = 10 ** 12  # steps of an endless stream


def bucket_of(lengths: np.ndarray, buckets: Sequence[int]) -> np.ndarray:
    """-> the index of the smallest bucket >= each length [N]; errors if one is longer
    than the largest bucket."""
    buckets = np.asarray(buckets)
    if len(buckets) == 0 or np.any(np.diff(buckets) <= 0) or buckets[0] <= 0:
        raise ConfigError(f"config.data.buckets: {tuple(buckets)} must be increasing "
                          f"positive lengths")
    lengths = np.asarray(lengths)
    too_long = np.flatnonzero(lengths > buckets[-1])
    if len(too_long):
        raise ConfigError(f"config.data.buckets: example {too_long[0]} has "
                          f"{lengths[too_long[0]]} tokens, more than the largest bucket "
                          f"{buckets[-1]} (set config.data.max_length <= the largest bucket)")
    return np.searchsorted(buckets, lengths, side="left")


class EpochPlanner:
    """The global batches of each epoch: (indices [n_batches, batch_size] int64, -1 =
    padding row; bucket length per batch [n_batches])."""

    def __init__(self, lengths: Sequence[int], buckets: Sequence[int], batch_size: int,
                 seed: int, drop_remainder: bool = False, mix: bool = False):
        if batch_size <= 0:
            raise ConfigError(f"config.data.batch_size: {batch_size} must be > 0")
        self.lengths = np.asarray(lengths, np.int64)
        self.buckets = tuple(int(b) for b in buckets)
        self.batch_size = batch_size
        self.seed = seed
        self.drop_remainder = drop_remainder
        self.mix = mix
        self.bucket = bucket_of(self.lengths, self.buckets)
        if mix:
            n = len(self.lengths)
            self.batches_per_epoch = n // batch_size if drop_remainder else -(-n // batch_size)
        else:
            counts = np.bincount(self.bucket, minlength=len(self.buckets))
            per_bucket = counts // batch_size if drop_remainder else -(-counts // batch_size)
            self.batches_per_epoch = int(per_bucket.sum())
        if self.batches_per_epoch == 0:
            raise DataError(f"no batch: {len(self.lengths)} examples, batch size "
                            f"{batch_size}, drop_remainder={drop_remainder}")
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if epoch not in self._cache:
                if len(self._cache) >= 2:
                    self._cache.pop(min(self._cache))
                self._cache[epoch] = self._make_plan(epoch)
            return self._cache[epoch]

    def _make_plan(self, epoch: int):
        B = self.batch_size
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.lengths))
        if self.mix:
            return self._mixed_plan(perm)
        bucket = self.bucket[perm]
        full, partial = [], []  # (position in perm where the batch completes, rows, bucket)
        for b in range(len(self.buckets)):
            positions = np.flatnonzero(bucket == b)
            n_full = len(positions) // B
            for k in range(n_full):
                chunk = positions[k * B:(k + 1) * B]
                full.append((chunk[-1], perm[chunk], b))
            rest = positions[n_full * B:]
            if len(rest) and not self.drop_remainder:
                rows = np.full(B, -1, np.int64)
                rows[:len(rest)] = perm[rest]
                partial.append((0, rows, b))
        full.sort(key=lambda t: t[0])
        batches = full + partial
        indices = np.stack([rows for _, rows, _ in batches]).astype(np.int64)
        lengths = np.asarray([self.buckets[b] for _, _, b in batches], np.int32)
        return indices, lengths


    def _mixed_plan(self, perm: np.ndarray):
        """Consecutive rows of the permutation; each batch's bucket is its longest row's."""
        B, n = self.batch_size, self.batches_per_epoch
        indices = np.full((n, B), -1, np.int64)
        rows = perm[:n * B] if self.drop_remainder else perm
        indices.reshape(-1)[:len(rows)] = rows
        longest = np.where(indices >= 0, self.bucket[np.maximum(indices, 0)], 0).max(axis=1)
        return indices, np.asarray([self.buckets[b] for b in longest], np.int32)


def _pad_rows(records, rows: np.ndarray, T: int, pad_id: int, prefix: str = ""):
    n = len(rows)
    tokens = np.full((n, T), pad_id, np.int32)
    mask = np.zeros((n, T), bool)
    loss_mask = np.zeros((n, T), bool)
    kind = np.full(n, PAD_KIND, np.int8)
    for r, i in enumerate(rows):
        if i < 0:
            continue
        record = records[int(i)]
        t = np.asarray(record[prefix + "tokens"])
        tokens[r, :len(t)] = t
        mask[r, :len(t)] = True
        loss_mask[r, :len(t)] = record[prefix + "loss_mask"]
        kind[r] = record["kind"] if not prefix else (2 if prefix == "chosen_" else 3)
    return dict(tokens=tokens, mask=mask, loss_mask=loss_mask, kind=kind,
                index=np.asarray(rows, np.int64))


def make_batch(records, rows: np.ndarray, T: int, pad_id: int, pairs: bool = False) -> dict:
    """Rows of `records` (-1 = padding) -> the batch dict described in the module doc."""
    if not pairs:
        return _pad_rows(records, rows, T, pad_id)
    chosen = _pad_rows(records, rows, T, pad_id, "chosen_")
    rejected = _pad_rows(records, rows, T, pad_id, "rejected_")
    return {k: np.concatenate([chosen[k], rejected[k]]) for k in chosen}


class BatchStream:
    """A resumable iterator of this host's batches.

        stream = BatchStream(records, lengths, batch_size=8, buckets=(64, 128), seed=0,
                             pad_id=tokenizer.pad_token_id)
        batch = next(stream)
        state = stream.get_state()      # small JSON-able dict, store it in the checkpoint
        stream.set_state(state)         # later / in a new process: continue from there

    records: random-access sequence of dicts (`tfds` data source or a list):
      JSFT {"tokens", "loss_mask", "kind"}; pairs {"chosen_tokens", "chosen_loss_mask",
      "rejected_tokens", "rejected_loss_mask"}.
    lengths [N]: tokens per record (pairs: the longer row), used for bucketing.
    batch_size: global, in rows (JSFT) or pairs (DPO); divisible by process_count.
    num_epochs: None = endless.
    """

    def __init__(self, records, lengths: Sequence[int], *, batch_size: int,
                 buckets: Sequence[int] = DEFAULT_BUCKETS, seed: int = 0, pad_id: int = 0,
                 pairs: bool = False, num_epochs: int | None = None,
                 drop_remainder: bool = False, mix: bool = False,
                 process_index: int | None = None,
                 process_count: int | None = None, num_threads: int = 2, prefetch: int = 4):
        if len(records) != len(lengths):
            raise DataError(f"{len(records)} records but {len(lengths)} lengths")
        if process_index is None or process_count is None:
            import jax
            process_index, process_count = jax.process_index(), jax.process_count()
        if batch_size % process_count:
            raise ConfigError(f"config.data.batch_size: {batch_size} is not divisible by the "
                              f"number of hosts ({process_count})")
        self.records = records
        self.planner = EpochPlanner(lengths, buckets, batch_size, seed, drop_remainder, mix)
        self.pad_id, self.pairs = int(pad_id), pairs
        self.num_epochs = num_epochs
        per_host = batch_size // process_count
        self._rows = slice(process_index * per_host, (process_index + 1) * per_host)
        self._read_options = grain.ReadOptions(num_threads=num_threads,
                                               prefetch_buffer_size=prefetch)
        self._step = 0
        self._iter = None

    @property
    def batches_per_epoch(self) -> int:
        return self.planner.batches_per_epoch

    @property
    def total_steps(self) -> int | None:
        return None if self.num_epochs is None else self.num_epochs * self.batches_per_epoch

    def batch_at(self, step: int) -> dict:
        """The batch of global step `step` for this host (a pure function of step)."""
        epoch, j = divmod(int(step), self.batches_per_epoch)
        indices, lengths = self.planner.plan(epoch)
        return make_batch(self.records, indices[j, self._rows], int(lengths[j]), self.pad_id,
                          self.pairs)

    def _start(self):
        stop = self.total_steps if self.total_steps is not None else _FOREVER
        dataset = grain.MapDataset.range(self._step, max(stop, self._step)).map(self.batch_at)
        self._iter = iter(dataset.to_iter_dataset(self._read_options))

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._iter is None:
            self._start()
        batch = next(self._iter)   # StopIteration at the end of the last epoch
        self._step += 1
        return batch

    def _identity(self) -> dict:
        p = self.planner
        identity = dict(num_examples=len(p.lengths), batch_size=p.batch_size, seed=p.seed,
                        buckets=list(p.buckets), drop_remainder=p.drop_remainder,
                        batches_per_epoch=p.batches_per_epoch)
        if p.mix:  # only when on: states saved before the option existed still resume
            identity["mix_batches"] = True
        return identity

    def get_state(self) -> dict:
        """{"step": next global step, "epoch": its epoch, ...what must match to resume}."""
        return dict(step=self._step, epoch=self._step // self.batches_per_epoch,
                    **self._identity())

    def set_state(self, state: dict) -> None:
        expected = self._identity()
        different = {k: (state.get(k), v) for k, v in expected.items() if state.get(k) != v}
        if different:
            raise DataError(f"cannot resume the data stream: the data or the batching "
                            f"config changed since the state was saved (saved, now): "
                            f"{different}")
        self._step = int(state["step"])
        self._iter = None
