"""Decode-time matrix products on CPU: a packed-weight kernel called from XLA (FFI).

A decoding step multiplies a few rows (one new token per sequence) by every weight
matrix, so it runs at the speed the weights stream from memory. XLA:CPU's dot reads a
row-major [K, N] weight at ~25 GB/s for 8 rows on this project's 2-core machine, whose
memory streams 40+ GB/s; `cpu_matvec.cc` reads weights packed into contiguous column
panels [N/P, K, P] at close to the memory's speed (see bench/RESULTS.md).

    packed = pack(kernel, K, N)             # [*stack, K, N] -> [L, N/P, K, P], once
    y = matmul(x, packed, n, layer=i)       # x [..., K] -> y [..., N] float32

The C++ source is compiled on first use with the system's C++ compiler (`$CXX`, else
`c++`) into the sjjax cache (`$SJJAX_CACHE/kernels` or ~/.cache/sjjax/kernels), once per
source, jax version and CPU. Without a compiler, or with SJJAX_CPU_KERNELS=0, `available()`
is False and callers keep XLA's dot: results are the same within float32 rounding.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp

from sjjax import assets

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_matvec.cc")
TARGET = "sjjax_packed_matmul"
PACK_TARGET = "sjjax_pack"


def _cache_dir() -> Path:
    return Path(assets.cache_dir()) / "kernels"


def _cpu_fingerprint() -> str:
    """-march=native code runs only on the CPU it was built for: key the build on it."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [l for l in f if l.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() + platform.machine()


def _compile_flags() -> list[str]:
    return ["-O3", "-march=native", "-std=gnu++17", "-shared", "-fPIC",
            "-ffp-contract=fast",  # a * b + c as one FMA in the vector-extension loop
            "-w", f"-I{jax.ffi.include_dir()}"]


def _build() -> Path:
    """Compiles the kernel into the cache (once) and returns the shared library's path."""
    compiler = shutil.which(os.environ.get("CXX", "c++"))
    if compiler is None:
        raise RuntimeError("no C++ compiler ($CXX or c++) on PATH")
    flags = _compile_flags()
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join([compiler, *flags, jax.__version__,
                                                          _cpu_fingerprint()]).encode())
    out = _cache_dir() / f"cpu_matvec-{key.hexdigest()[:16]}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: concurrent builders never see half a file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        done = subprocess.run([compiler, *flags, str(SOURCE), "-o", tmp],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE} failed:\n{done.stderr[-2000:]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out


@functools.cache
def _library() -> ctypes.CDLL | None:
    """Builds, loads and registers the kernel with XLA's CPU backend; None if unavailable."""
    if os.environ.get("SJJAX_CPU_KERNELS", "1") == "0":
        return None
    try:
        lib = ctypes.cdll.LoadLibrary(str(_build()))
        for name, handler in ((TARGET, lib.SjjaxPackedMatmul), (PACK_TARGET, lib.SjjaxPack)):
            jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(handler), platform="cpu")
    except Exception as e:  # any failure leaves XLA's dot in place
        log.warning("sjjax CPU decode kernel unavailable, using XLA's dot: %s", e)
        return None
    return lib


def available() -> bool:
    """True when the packed kernel is built and registered (CPU only)."""
    return _library() is not None


def panel_width() -> int:
    """P: columns per packed panel (48 with AVX-512, 8 with AVX, 4 otherwise)."""
    lib = _library()
    if lib is None:
        raise RuntimeError("the CPU decode kernel is not available")
    return int(lib.SjjaxPanelWidth())


def pack(kernel: jax.Array, k: int, n: int, transposed: bool = False) -> jax.Array:
    """kernel [*stack, *in, *out] whose `in` axes hold k entries and `out` axes n (or
    [*stack, n, k] when `transposed`, as a tied embedding [V, d] is) -> packed
    [L, panels, k, P] float32, L the product of the stack axes (1 without any), columns
    past n zero. One pass over the weights in the kernel (XLA's transpose into this
    layout is 10x slower)."""
    p = panel_width()
    stacked = kernel.astype(jnp.float32).reshape((-1, n, k) if transposed else (-1, k, n))
    out = jax.ShapeDtypeStruct((stacked.shape[0], -(-n // p), k, p), jnp.float32)
    return jax.ffi.ffi_call(PACK_TARGET, out)(stacked, transposed=transposed)


def matmul(x: jax.Array, packed: jax.Array, n: int, layer: jax.Array | int = 0) -> jax.Array:
    """x [..., K] (any float dtype) times layer `layer` of `packed` -> float32 [..., n]."""
    k = packed.shape[2]
    rows = x.reshape(-1, k).astype(jnp.float32)
    call = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct((rows.shape[0], n), jnp.float32))
    y = call(rows, packed, jnp.asarray(layer, jnp.int32))
    return y.reshape(*x.shape[:-1], n)
