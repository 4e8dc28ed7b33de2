"""The accelerator catalogue: memory and peak FLOP/s of one JAX device of each kind, and
the parsing of accelerator types ('v4-32', 'v5litepod-64', 'h100') into a device count."""

from __future__ import annotations

import dataclasses
import re

from sjjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    name: str
    memory_gib: float          # HBM per JAX device, GiB (2**30 bytes)
    peak_tflops: float         # dense bf16 peak per JAX device, 1e12 FLOP/s
    count_per_unit: float      # JAX devices per unit of the accelerator-type suffix


# Per *JAX device*: a v4 / v5p chip (2 TensorCores, megacore) is one device; the
# accelerator-type suffix counts TensorCores for v4 / v5p and chips for v5e / v6e.
DEVICES: dict[str, DeviceSpec] = {
    "v4": DeviceSpec("TPU v4", 32.0, 275.0, 0.5),
    "v5e": DeviceSpec("TPU v5e", 16.0, 197.0, 1.0),
    "v5p": DeviceSpec("TPU v5p", 95.0, 459.0, 0.5),
    "v6e": DeviceSpec("TPU v6e", 32.0, 918.0, 1.0),
    "h100": DeviceSpec("NVIDIA H100 80GB", 80.0, 989.0, 1.0),
    "h200": DeviceSpec("NVIDIA H200", 141.0, 989.0, 1.0),
    "a100": DeviceSpec("NVIDIA A100 80GB", 80.0, 312.0, 1.0),
}
_DEVICE_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v6litepod": "v6e"}
DEFAULT_MEMORY_GIB = 16.0      # per device, when neither an accelerator nor a size is given


def parse_accelerator(accelerator: str) -> tuple[str, int | None]:
    """'v4-32' -> ('v4', 16 devices); 'v5litepod-64' -> ('v5e', 64); 'h100' -> ('h100', None)."""
    match = re.fullmatch(r"([a-z0-9]+?)(?:-(\d+))?", accelerator.strip().lower())
    if not match:
        raise ConfigError(f"accelerator {accelerator!r}: expected e.g. v4-32, v5litepod-64, "
                          f"v5p-16, h100")
    kind = _DEVICE_ALIASES.get(match.group(1), match.group(1))
    if kind not in DEVICES:
        raise ConfigError(f"accelerator {accelerator!r}: unknown kind {kind!r}; known "
                          f"{sorted(DEVICES)} (and {sorted(_DEVICE_ALIASES)})")
    count = match.group(2)
    if count is None:
        return kind, None
    devices = int(count) * DEVICES[kind].count_per_unit
    if devices != int(devices) or devices < 1:
        raise ConfigError(f"accelerator {accelerator!r}: {count} is not a valid size for {kind}")
    return kind, int(devices)
