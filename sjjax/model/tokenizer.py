"""Tokenizers: transformers tokenizers from a model directory or from a GGUF file.

Every tokenizer returned here pads on the left (batches are left-padded
everywhere in sjjax) and has a pad token.
"""

from __future__ import annotations

import os


def load_tokenizer(source: str | os.PathLike):
    """A transformers tokenizer from a HF model directory or a `.gguf` file (offline)."""
    from transformers import AutoTokenizer

    source = os.fspath(source)
    if source.endswith(".gguf"):
        if not os.path.exists(source):
            raise FileNotFoundError(f"{source}: GGUF file not found")
        tokenizer = AutoTokenizer.from_pretrained(
            os.path.dirname(source) or ".", gguf_file=os.path.basename(source),
            local_files_only=True)
    else:
        if not os.path.isdir(source):
            raise FileNotFoundError(f"{source}: tokenizer directory not found")
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    return prepare_tokenizer(tokenizer)


def prepare_tokenizer(tokenizer):
    """Left padding, and a pad token (the EOS token if the tokenizer has none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("tokenizer has neither a pad token nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
