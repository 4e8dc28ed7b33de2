"""Metrics: JSONL (one object per line) and TensorBoard, plus a one-line summary."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Mapping

import jax
import numpy as np

from sjjax import fs


def _scalar(value):
    value = np.asarray(value)
    return value.item() if value.size == 1 else value.tolist()


class MetricsLogger:
    """Appends {"step": s, "phase": ..., **metrics} lines to run_dir/metrics.jsonl and
    writes the scalars to TensorBoard (run_dir/tb)."""

    def __init__(self, run_dir: str, phase: str, tensorboard: bool = True,
                 resume_step: int | None = None):
        self.path = fs.join(run_dir, "metrics.jsonl")
        self.phase = phase
        self.enabled = jax.process_index() == 0  # one writer on multi-host runs
        # Local files are appended to; a remote (gs://) file is rewritten whole.
        self._lines = fs.read_text(self.path).splitlines(True) if fs.exists(self.path) else []
        self._lines = [l for l in self._lines if l.strip()]
        if resume_step is not None:  # a resumed run re-logs the steps after its checkpoint
            self._lines = [l for l in self._lines if json.loads(l).get("phase") != phase
                           or json.loads(l).get("step", 0) <= resume_step]
        if self.enabled:
            fs.write_text(self.path, "".join(self._lines))
        self._file = (open(self.path, "a") if self.enabled and not fs.is_remote(self.path)
                      else None)
        self._tb = None
        if tensorboard and self.enabled:
            from tensorboardX import SummaryWriter
            tb_root = (os.path.join(os.path.expanduser("~"), "sjjax-tb", run_dir.split("/")[-1])
                       if fs.is_remote(run_dir) else os.path.join(run_dir, "tb"))
            self._tb = SummaryWriter(os.path.join(tb_root, phase))
        self.start = time.time()

    def log(self, step: int, metrics: Mapping) -> dict:
        row = {"step": int(step), "phase": self.phase,
               "time": round(time.time() - self.start, 3)}
        for k, v in metrics.items():
            v = _scalar(v)
            if isinstance(v, float) and not math.isfinite(v) and k != "loss":
                continue  # e.g. judge metrics of a batch without judgments
            row[k] = v
        line = json.dumps(row) + "\n"
        self._lines.append(line)
        if self._file is not None:
            self._file.write(line)
            self._file.flush()
        elif self.enabled:
            fs.write_text(self.path, "".join(self._lines))
        if self._tb is not None:
            for k, v in row.items():
                if k not in ("step", "phase") and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
        return row

    def close(self):
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: str, phase: str | None = None) -> list[dict]:
    path = fs.join(run_dir, "metrics.jsonl")
    if not fs.exists(path):
        return []
    rows = [json.loads(l) for l in fs.read_text(path).splitlines() if l.strip()]
    return [r for r in rows if phase is None or r.get("phase") == phase]


def summary_line(phase: str, metrics: Mapping, keys=None) -> str:
    keys = keys or list(metrics)
    parts = []
    for k in keys:
        if k in metrics:
            v = metrics[k]
            parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return f"[{phase}] " + " ".join(parts)
