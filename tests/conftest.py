"""Shared fixtures. Heavy ones (SmolLM2 in JAX and in PyTorch) are session-scoped."""

from __future__ import annotations

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~30 s on a 2-core CPU")
    _share_compilations()


_CREATED_CACHE: list[str] = []  # the cache directory this process made (removed at exit)


def pytest_unconfigure(config):
    import shutil
    for path in _CREATED_CACHE:
        shutil.rmtree(path, ignore_errors=True)


def _share_compilations() -> None:
    """One persistent XLA compilation cache for the whole test session (its xdist
    workers and the subprocesses they start inherit it through the environment): the
    pipeline tests compile the same sampler, judge and training programs in phase after
    phase. Set here, before any test imports jax; the first pytest process (the xdist
    controller) picks the directory, a fresh one per session."""
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        import tempfile
        os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="sjjax-test-xla-")
        _CREATED_CACHE.append(os.environ["JAX_COMPILATION_CACHE_DIR"])
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (the real data sets live beside the project)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_policy():
    """A small from-scratch model (2 layers, d=64) with the suite's tokenizer, seed 0."""
    import ml_collections

    from sjjax.phases.common import load_policy
    tiny = dict(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                num_kv_heads=2, head_dim=16)
    return load_policy(ml_collections.ConfigDict(dict(seed=0, model=dict(
        source="tiny", tiny=tiny, dtype="float32", param_dtype="float32", remat="none"))))


@pytest.fixture(scope="session")
def smollm2_gguf() -> str:
    from sjjax import assets
    path = assets.smollm2_path(must_exist=False)
    if not os.path.exists(path):
        pytest.skip(f"SmolLM2 asset missing at {path}: run `python -m sjjax.assets smollm2`")
    return path


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf):
    """(config, params, tokenizer) of SmolLM2-135M-Instruct in float32, loaded by sjjax."""
    from sjjax.model.loading import load_pretrained
    return load_pretrained(smollm2_gguf)


@pytest.fixture(scope="session")
def smollm2_torch(smollm2_gguf):
    """transformers' own PyTorch SmolLM2, loaded from the same GGUF file."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(smollm2_gguf), gguf_file=os.path.basename(smollm2_gguf),
        dtype=torch.float32, local_files_only=True)
    return model.eval()


# The slowest files first (measured on 2 cores, most first), so that under the README's
# `pytest -n 2 --dist loadfile --no-loadscope-reorder` the two longest files start at once
# on the two workers and the small ones fill the end. (Without --no-loadscope-reorder
# xdist sends the files with the most tests first, which left the two longest, two tests
# each, to run one after the other on one worker.)
SLOW_FILES = ("phases/test_e2e_tiny.py", "test_notebook.py", "phases/test_resume.py",
              "test_sharding.py", "phases/test_multiprocess.py", "phases/test_mesh_restore.py",
              "test_cli_errors.py", "phases/test_failures.py", "test_install.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.path.relative_to(ROOT / "tests").as_posix()
        return SLOW_FILES.index(path) if path in SLOW_FILES else len(SLOW_FILES)
    items.sort(key=rank)  # stable: each file keeps its own order
