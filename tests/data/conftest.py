"""Fixtures of the data tests: the SmolLM2 tokenizer and the encoders built on it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tokenizer(smollm2_gguf):
    from sjjax.model.tokenizer import load_tokenizer
    return load_tokenizer(smollm2_gguf)


@pytest.fixture(scope="session")
def chat(tokenizer):
    from sjjax.data.templates import ChatEncoder
    return ChatEncoder(tokenizer)


@pytest.fixture(scope="session")
def judge_config():
    from sjjax.config import base_config
    return base_config("jsft").judge


@pytest.fixture(scope="session")
def judge(tokenizer, judge_config):
    from sjjax.data.templates import JudgePromptBuilder
    return JudgePromptBuilder.from_config(tokenizer, judge_config)


def write_lines(path, lines) -> str:
    """Writes text lines (already JSON or deliberately broken) to `path`."""
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)
