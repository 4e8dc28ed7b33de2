"""Metrics: JSONL (one object per line) and TensorBoard, plus a one-line summary."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Mapping

import numpy as np


def _scalar(value):
    value = np.asarray(value)
    return value.item() if value.size == 1 else value.tolist()


class MetricsLogger:
    """Appends {"step": s, "phase": ..., **metrics} lines to run_dir/metrics.jsonl and
    writes the scalars to TensorBoard (run_dir/tb)."""

    def __init__(self, run_dir: str, phase: str, tensorboard: bool = True,
                 resume_step: int | None = None):
        os.makedirs(run_dir, exist_ok=True)
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.phase = phase
        if resume_step is not None:
            self._drop_after(resume_step)
        self._file = open(self.path, "a")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(os.path.join(run_dir, "tb", phase))
        self.start = time.time()

    def _drop_after(self, step: int):
        """A resumed run re-logs the steps after its checkpoint: keep one copy."""
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            lines = [l for l in f if l.strip()]
        kept = [l for l in lines
                if json.loads(l).get("phase") != self.phase or json.loads(l).get("step", 0) <= step]
        with open(self.path, "w") as f:
            f.writelines(kept)

    def log(self, step: int, metrics: Mapping) -> dict:
        row = {"step": int(step), "phase": self.phase,
               "time": round(time.time() - self.start, 3)}
        for k, v in metrics.items():
            v = _scalar(v)
            if isinstance(v, float) and not math.isfinite(v) and k != "loss":
                continue  # e.g. judge metrics of a batch without judgments
            row[k] = v
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in row.items():
                if k not in ("step", "phase") and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
        return row

    def close(self):
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: str, phase: str | None = None) -> list[dict]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    return [r for r in rows if phase is None or r.get("phase") == phase]


def summary_line(phase: str, metrics: Mapping, keys=None) -> str:
    keys = keys or list(metrics)
    parts = []
    for k in keys:
        if k in metrics:
            v = metrics[k]
            parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return f"[{phase}] " + " ".join(parts)
