"""Paths that may be local or remote (gs:// on Cloud TPU VMs).

Orbax writes checkpoints to either itself; the small files around them (configs, the
model spec, final metadata, metrics) go through `etils.epath`, which reaches Cloud
Storage through gcsfs (installed by the `tpu` extra). Only process 0 writes them.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import jax


def is_remote(path: str) -> bool:
    return "://" in str(path)


def _epath(path):
    from etils import epath
    return epath.Path(path)


def join(*parts: str) -> str:
    return "/".join([str(parts[0]).rstrip("/")] + [str(p).strip("/") for p in parts[1:]]) \
        if is_remote(parts[0]) else os.path.join(*parts)


def exists(path: str) -> bool:
    return _epath(path).exists() if is_remote(path) else os.path.exists(path)


def unwritable_reason(path: str) -> str | None:
    """Why `path` (a directory to create or write into) cannot be written, or None. Local
    paths only (a gs:// bucket reports its own errors); nothing is created."""
    if is_remote(path):
        return None
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        where = "is" if probe == os.path.abspath(path) else f"is under {probe}, which is"
        return f"{where} a file, not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == os.path.abspath(path) else f" ({probe})"
        return f"is not writable by this user{where}"
    return None


def makedirs(path: str) -> None:
    if is_remote(path):
        _epath(path).mkdir(parents=True, exist_ok=True)
    else:
        os.makedirs(path, exist_ok=True)


def write_text(path: str, text: str) -> None:
    """Writes a whole file (process 0 only)."""
    if jax.process_index() != 0:
        return
    if is_remote(path):
        _epath(path).write_text(text)
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def read_text(path: str) -> str:
    if is_remote(path):
        return _epath(path).read_text()
    with open(path) as f:
        return f.read()


def local_copy(path: str) -> str:
    """A local directory holding a (possibly remote) directory's files."""
    if not is_remote(path):
        return path
    target = tempfile.mkdtemp(prefix="sjjax-")
    for child in _epath(path).iterdir():
        if child.is_file():
            (_epath(target) / child.name).write_bytes(child.read_bytes())
    return target


def save_dir(local_dir: str, path: str) -> None:
    """Copies a local directory's files to `path` (process 0 only)."""
    if jax.process_index() != 0:
        return
    if not is_remote(path):
        if os.path.abspath(local_dir) != os.path.abspath(path):
            shutil.copytree(local_dir, path, dirs_exist_ok=True)
        return
    for name in os.listdir(local_dir):
        with open(os.path.join(local_dir, name), "rb") as f:
            (_epath(path) / name).write_bytes(f.read())
