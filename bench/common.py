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
    return timeit_interleaved({"fn": fn}, warmup=warmup, repeats=repeats)["fn"]


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


def on_gpu() -> bool:
    """Whether JAX runs on a GPU here (the peer then runs on CUDA too)."""
    import jax
    return jax.default_backend() == "gpu"


def hardware_name() -> str:
    """The card's name on a GPU, else the CPU core count, for the printed header."""
    import jax
    if on_gpu():
        return jax.devices()[0].device_kind
    return f"{os.cpu_count()} CPU cores"


def match_precision(dtype: str):
    """On GPU, float32 matmuls in JAX default to TF32 while PyTorch's default to full
    float32: ask JAX for full precision so that both sides do the same work (and the
    parity checks mean something)."""
    import jax
    if on_gpu() and dtype == "float32":
        jax.config.update("jax_default_matmul_precision", "highest")


def matmul_flops_per_s(n: int = 2048, dtype: str = "float32") -> float:
    """Matmul throughput in `dtype` through XLA (the best of JAX and torch is reported);
    on a GPU on the card, with n raised to 8192 so the card is saturated."""
    import jax
    import jax.numpy as jnp
    n = 8192 if on_gpu() else n
    a = jnp.ones((n, n), dtype) * 0.5
    f = jax.jit(lambda x: x @ x)
    best = 2 * n ** 3 / timeit(lambda: f(a).block_until_ready(), repeats=5)
    try:
        import torch
        device = torch_device()
        t = torch.full((n, n), 0.5, dtype=getattr(torch, dtype), device=device)
        best = max(best, 2 * n ** 3 / timeit(lambda: torch_sync(t @ t), repeats=5))
    except ImportError:
        pass
    return best


def copy_bytes_per_s(megabytes: int = 512) -> float:
    """Memory bandwidth: bytes read + written by a large copy (numpy on CPU; on a GPU a
    jitted device-to-device copy of 4 GiB in HBM)."""
    if on_gpu():
        import jax
        import jax.numpy as jnp
        src = jnp.ones((1 << 30,), jnp.float32)
        copy = jax.jit(lambda x: x + 1.0)
        seconds = timeit(lambda: copy(src).block_until_ready(), repeats=5)
        return 2 * src.nbytes / seconds
    src = np.ones(megabytes * (1 << 20) // 4, np.float32)
    dst = np.empty_like(src)
    return 2 * src.nbytes / timeit(lambda: np.copyto(dst, src), repeats=5)


def hardware_bounds(dtype: str = "float32") -> dict:
    return {"flops_per_s": matmul_flops_per_s(dtype=dtype), "bytes_per_s": copy_bytes_per_s(),
            "hardware": hardware_name()}


def torch_device() -> str:
    """"cuda" where JAX runs on a GPU (the peer runs on the same card), else "cpu"."""
    return "cuda" if on_gpu() else "cpu"


def torch_sync(result=None):
    """Waits for the peer's queued CUDA work (its timings must include it)."""
    if torch_device() == "cuda":
        import torch
        torch.cuda.synchronize()
    return result


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


def load_torch_smollm2(dtype: str = "float32"):
    """The peer: transformers' SmolLM2 from the same GGUF, in `dtype`, on torch_device()."""
    import torch
    from transformers import AutoModelForCausalLM
    path = smollm2_path()
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path),
                                                 gguf_file=os.path.basename(path),
                                                 dtype=getattr(torch, dtype),
                                                 local_files_only=True)
    return model.to(torch_device()).eval()


def add_dtype_argument(parser):
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="weights and compute of both sides (bfloat16 on accelerators)")


def set_threads():
    """The peer gets every core too (torch defaults may differ)."""
    try:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        pass


def fmt_rate(x: float, unit: str) -> str:
    return f"{x:,.1f} {unit}"
