"""Shared fixtures. Heavy ones (SmolLM2 in JAX and in PyTorch) are session-scoped."""

from __future__ import annotations

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~30 s on a 2-core CPU")


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (the real data sets live beside the project)")
    return SHARED_DATA


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
