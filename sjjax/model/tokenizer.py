"""Tokenizers: transformers tokenizers from a model directory or from a GGUF file.

Every tokenizer returned here pads on the left (batches are left-padded
everywhere in sjjax) and has a pad token.

A GGUF file carries no `tokenizer.json`, only llama.cpp metadata (vocabulary,
merges, token types, special token ids, chat template). `tokenizer_from_gguf`
builds the tokenizer from that metadata with the `tokenizers` library alone:
transformers' own GGUF path (`AutoTokenizer.from_pretrained(gguf_file=...)`)
imports torch, which sjjax does not otherwise need.

Supported: byte-level BPE (`tokenizer.ggml.model == "gpt2"`: GPT-2, SmolLM,
StarCoder, Qwen2, Llama-3 vocabularies), with the pre-tokenizer split that
`tokenizer.ggml.pre` names, as llama.cpp applies it. SentencePiece vocabularies
(`"llama"`, older Llama/Mistral files) fail with one line naming the file; use a
HF model directory with a `tokenizer.json` for those.
"""

from __future__ import annotations

import os

from sjjax.errors import InputNotFoundError, ModelFileError, SjjaxError

# llama.cpp token types (tokenizer.ggml.token_type).
_CONTROL, _USER_DEFINED = 3, 4

# Pre-tokenizer regexes of llama.cpp's `tokenizer.ggml.pre` kinds, split before the
# byte-level mapping (the same regexes transformers' GGUF converter uses).
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# pre kind -> "gpt2" (GPT-2's own regex), "digits" (each digit split off first, then
# GPT-2's regex: llama.cpp's "\p{N}" rule, and the Digits pre-tokenizer of the
# original tokenizer.json) or a split regex.
_PRE_TOKENIZERS = {
    "default": "gpt2", "gpt-2": "gpt2", "gpt2": "gpt2",
    "smollm": "digits", "starcoder": "digits",
    "qwen2": _QWEN2_SPLIT,
    "llama-bpe": _LLAMA3_SPLIT, "llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT,
}


class UnsupportedTokenizerError(SjjaxError, ValueError):
    """A GGUF file's tokenizer is of a kind sjjax cannot build; the message names it."""


def load_tokenizer(source: str | os.PathLike):
    """A transformers tokenizer from a HF model directory or a `.gguf` file (offline)."""
    source = os.fspath(source)
    if source.endswith(".gguf"):
        tokenizer = tokenizer_from_gguf(source)
    else:
        from transformers import AutoTokenizer

        if not os.path.isdir(source):
            raise InputNotFoundError(f"{source}: tokenizer directory not found")
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as err:  # no or unreadable tokenizer files
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelFileError(f"{source}: no usable tokenizer files ({first}); a model "
                                 f"directory needs tokenizer.json (or the files of a "
                                 f"slow tokenizer) next to config.json") from None
    return prepare_tokenizer(tokenizer)


def prepare_tokenizer(tokenizer):
    """Left padding, and a pad token (the EOS token if the tokenizer has none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelFileError(f"{getattr(tokenizer, 'name_or_path', '') or 'tokenizer'}: "
                                 f"the tokenizer has neither a pad token nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenizer_from_gguf(path: str | os.PathLike):
    """A transformers `PreTrainedTokenizerFast` built from a GGUF file's metadata.

    Same special tokens (bos/eos/unk/pad from the `tokenizer.ggml.*_token_id` keys,
    control tokens kept whole), chat template and BOS/EOS insertion as the file
    states; left padding (`prepare_tokenizer`).
    """
    from sjjax.model.gguf_io import read_gguf_metadata

    path = os.fspath(path)
    meta = read_gguf_metadata(path)
    kind = meta.get("tokenizer.ggml.model")
    if kind is None:
        raise ModelFileError(f"{path}: GGUF file has no tokenizer (tokenizer.ggml.model missing)")
    if kind != "gpt2":
        raise UnsupportedTokenizerError(
            f"{path}: GGUF tokenizer kind {kind!r} (tokenizer.ggml.model) is not supported; "
            "sjjax builds byte-level BPE ('gpt2') tokenizers from GGUF; for other kinds "
            "load a HF model directory with a tokenizer.json")
    pre = meta.get("tokenizer.ggml.pre", "default")
    if pre not in _PRE_TOKENIZERS:
        raise UnsupportedTokenizerError(
            f"{path}: GGUF pre-tokenizer {pre!r} (tokenizer.ggml.pre) is not supported; "
            f"sjjax knows {sorted(_PRE_TOKENIZERS)}")

    def require(key):
        if key not in meta:
            raise ModelFileError(f"{path}: GGUF tokenizer metadata {key} is missing")
        return meta[key]

    tokens, merges = require("tokenizer.ggml.tokens"), require("tokenizer.ggml.merges")
    token_types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    if len(token_types) != len(tokens):
        raise ModelFileError(f"{path}: GGUF tokenizer metadata has {len(tokens)} tokens but "
                             f"{len(token_types)} token types")

    def special(name):
        index = meta.get(f"tokenizer.ggml.{name}_token_id")
        if index is None:
            return None
        if not 0 <= index < len(tokens):
            raise ModelFileError(f"{path}: tokenizer.ggml.{name}_token_id {index} is outside "
                                 f"the vocabulary of {len(tokens)} tokens")
        return tokens[index]

    backend = _byte_level_bpe(tokens, merges, token_types, _PRE_TOKENIZERS[pre])
    bos, eos = special("bos"), special("eos")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False)) and bos is not None
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False)) and eos is not None
    _set_post_processor(backend, bos if add_bos else None, eos if add_eos else None)

    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=bos, eos_token=eos, unk_token=special("unknown"),
        pad_token=special("padding"), chat_template=meta.get("tokenizer.chat_template"),
        padding_side="left", clean_up_tokenization_spaces=False)
    return prepare_tokenizer(tokenizer)


def _byte_level_bpe(tokens, merges, token_types, pre):
    """The `tokenizers.Tokenizer` of a byte-level BPE vocabulary."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    alphabet = _byte_alphabet()
    spelled = set(alphabet.values())

    def spell(token):
        # Byte-level vocabularies store tokens in GPT-2's byte alphabet already; a token
        # stored as plain text (some user-defined ones) is respelled byte by byte.
        return token if set(token) <= spelled else "".join(
            alphabet[b] for b in token.encode("utf-8"))

    vocab = {}
    for index, token in enumerate(tokens):
        vocab.setdefault(spell(token), index)
    backend = Tokenizer(models.BPE(
        vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges], fuse_unk=False,
        byte_fallback=False))
    if pre == "gpt2":
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif pre == "digits":
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pre), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    # Control tokens (<|im_start|>, <|endoftext|>, ...) match whole and are special
    # (skipped by decode(skip_special_tokens=True)); user-defined ones match whole too.
    # A "control" token outside the byte alphabet is a llama.cpp mislabel: skipped, as
    # transformers' converter does.
    backend.add_special_tokens([
        AddedToken(token, special=True, normalized=False)
        for token, kind in zip(tokens, token_types)
        if kind == _CONTROL and set(token) <= spelled])
    backend.add_tokens([
        AddedToken(token, special=False, normalized=False)
        for token, kind in zip(tokens, token_types)
        if kind == _USER_DEFINED and token in vocab])
    return backend


def _set_post_processor(backend, bos: str | None, eos: str | None):
    """BOS/EOS around every encoded text, where the file asks for them."""
    from tokenizers import processors

    head = f"{bos}:0 " if bos else ""
    tail = f" {eos}:0" if eos else ""
    specials = [(t, backend.token_to_id(t)) for t in dict.fromkeys([bos, eos]) if t]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{head}$A:0{tail}", pair=f"{head}$A:0{tail} {head}$B:1{tail}",
        special_tokens=specials)


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character table (`bytes_to_unicode`)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table
