"""Shared benchmark helpers: timing, the hardware bounds of this machine, SmolLM2 loading.

Every benchmark measures sjjax and its peer in the same run on the same machine and
prints the ratio; the hardware bounds (a large matmul's FLOP/s, a large copy's
bytes/s) are measured in the same run too, so "share of the bound" is honest.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np


def timeit(fn, *, warmup: int = 1, repeats: int = 3) -> float:
    """Median wall time of fn() in seconds (fn must block until its work is done)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def timeit_interleaved(fns: dict, *, warmup: int = 1, repeats: int = 5) -> dict:
    """{name: median wall time in seconds}, running the functions in turn each round, so
    that slow spells of a shared machine (its memory bandwidth varies by +-10% over
    minutes here) fall on every side alike instead of on whichever ran then."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def matmul_flops_per_s(n: int = 2048) -> float:
    """float32 matmul throughput through XLA (the best of JAX and torch is reported)."""
    import jax
    import jax.numpy as jnp
    a = jnp.ones((n, n), jnp.float32) * 0.5
    f = jax.jit(lambda x: x @ x)
    best = 2 * n ** 3 / timeit(lambda: f(a).block_until_ready(), repeats=5)
    try:
        import torch
        t = torch.full((n, n), 0.5)
        best = max(best, 2 * n ** 3 / timeit(lambda: t @ t, repeats=5))
    except ImportError:
        pass
    return best


def copy_bytes_per_s(megabytes: int = 512) -> float:
    """Memory bandwidth: bytes read + written by a large numpy copy."""
    src = np.ones(megabytes * (1 << 20) // 4, np.float32)
    dst = np.empty_like(src)
    return 2 * src.nbytes / timeit(lambda: np.copyto(dst, src), repeats=5)


def hardware_bounds() -> dict:
    return {"flops_per_s": matmul_flops_per_s(), "bytes_per_s": copy_bytes_per_s()}


def forward_flops_per_token(cfg, context: int) -> float:
    """Matmul FLOPs of one token's forward: 2 x (weights used) + attention (QK and PV)."""
    d, f, l = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers
    h, k, dh = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    per_layer = 2 * (d * h * dh + 2 * d * k * dh + h * dh * d + 3 * d * f)
    attention = 2 * 2 * h * dh * context
    return l * (per_layer + attention) + 2 * d * cfg.vocab_size


def smollm2_path() -> str:
    from sjjax import assets
    return assets.smollm2_path()


def load_torch_smollm2():
    import torch
    from transformers import AutoModelForCausalLM
    path = smollm2_path()
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path),
                                                 gguf_file=os.path.basename(path),
                                                 dtype=torch.float32, local_files_only=True)
    return model.eval()


def set_threads():
    """The peer gets every core too (torch defaults may differ)."""
    try:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        pass


def fmt_rate(x: float, unit: str) -> str:
    return f"{x:,.1f} {unit}"
