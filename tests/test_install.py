"""A lean install: the core of sjjax needs neither torch nor accelerate.

- The GGUF tokenizer sjjax builds from metadata (`sjjax.model.tokenizer`) gives the
  ids transformers' own GGUF tokenizer gives (that one needs torch + accelerate, so
  those comparisons skip without them).
- In a subprocess where `import torch` / `import accelerate` fail, SmolLM2 loads with
  its tokenizer and the tiny JSFT trains.
- The core requirements (no `extra ==` marker) name neither.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap

import pytest

from sjjax.model.gguf_io import GGUFFormatError
from sjjax.model.loading import load_pretrained
from sjjax.model.tokenizer import (UnsupportedTokenizerError, load_tokenizer,
                                   prepare_tokenizer)
from tests.conftest import ROOT

TORCH_PACKAGES = ("torch", "accelerate")

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one short sentence."},
     {"role": "user", "content": "Why is the sky blue? Explain in 2 lines.\nThanks!"}],
    [{"role": "user", "content": "Write a haiku about a café in Zürich — 日本語 ok 🙂"},
     {"role": "assistant", "content": "Steam on the window,\n  snow on 3 rooftops."},
     {"role": "user", "content": "Now one about <|im_start|> tokens, please."}],
]
# Plain texts: unicode, digits, spaces, tabs, newlines, control-token strings. Digits
# here follow at most one space; see test_digits_are_split_first_like_llama_cpp.
TEXTS = [
    "Hello, world! It's 2024; we're 100% sure they'll come.",
    "Ünïcødé: café, naïve, Zürich, Ελληνικά, русский, 日本語, 한국어 🙂👍🏽",
    "x = 3.14159 * 2\n\n\tif x > 6: print(x)\r\n",
    "trailing spaces   \nand   internal    runs\n\n\n",
    "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><repo_name>sjjax<file_sep>setup.py",
    "",
]
# Runs of spaces before a digit: where llama.cpp's "smollm" pre-tokenizer (and
# SmolLM2's own tokenizer.json) differ from transformers' GGUF converter.
DIGIT_TEXTS = ["a   12 b", "x  1", "Price: $4.50\n\n  99 bottles", "  7", "\t 3 4  5"]


@pytest.fixture(scope="module")
def ours(smollm2_gguf):
    return load_tokenizer(smollm2_gguf)


def transformers_gguf_tokenizer(path: str):
    """transformers' own tokenizer from a GGUF file (needs torch and accelerate)."""
    try:
        import accelerate  # noqa: F401
        import torch  # noqa: F401
    except ImportError as err:
        pytest.skip(f"transformers reads a GGUF tokenizer only with torch and accelerate ({err})")
    from transformers import AutoTokenizer
    return prepare_tokenizer(AutoTokenizer.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), local_files_only=True))


@pytest.fixture(scope="module")
def reference(smollm2_gguf):
    return transformers_gguf_tokenizer(smollm2_gguf)


def chat_ids(tokenizer, chat) -> list[int]:
    return list(tokenizer.apply_chat_template(chat, add_generation_prompt=True,
                                              return_dict=True)["input_ids"])


# --- the tokenizer built from GGUF metadata vs transformers' -----------------------------


def test_special_tokens_vocab_and_template_match_transformers(ours, reference):
    for name in ("bos", "eos", "pad", "unk"):
        assert getattr(ours, f"{name}_token") == getattr(reference, f"{name}_token"), name
        assert getattr(ours, f"{name}_token_id") == getattr(reference, f"{name}_token_id"), name
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == (1, 2, 2)
    assert len(ours) == len(reference) == 49152
    assert ours.get_vocab() == reference.get_vocab()
    assert sorted(ours.all_special_tokens) == sorted(reference.all_special_tokens)

    def added(tok):  # the tokens matched whole: 17 control tokens, all special
        return {i: (t.content, t.special) for i, t in tok.added_tokens_decoder.items()}

    assert added(ours) == added(reference) and len(added(ours)) == 17
    assert ours.chat_template == reference.chat_template
    assert ours.padding_side == "left"


@pytest.mark.parametrize("chat", CHATS, ids=range(len(CHATS)))
def test_chat_prompt_ids_match_transformers(ours, reference, chat):
    ids = chat_ids(ours, chat)
    assert ids == chat_ids(reference, chat)
    prompt = ours("<|im_start|>assistant\n")["input_ids"]  # the generation prompt
    assert ids[-len(prompt):] == prompt and prompt[0] == ours.bos_token_id
    assert ours.decode(ids) == ours.apply_chat_template(chat, add_generation_prompt=True,
                                                        tokenize=False)


def test_left_padded_chat_batch_matches_transformers(ours, reference):
    def batch(tok):
        enc = tok.apply_chat_template(CHATS, add_generation_prompt=True, padding=True,
                                      return_dict=True)
        return enc["input_ids"], enc["attention_mask"]

    ids, mask = batch(ours)
    assert (ids, mask) == batch(reference)
    assert mask[0][0] == 0 and ids[0][0] == ours.pad_token_id, "left padding"


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_text_ids_match_transformers_and_round_trip(ours, reference, text):
    ids = ours(text)["input_ids"]
    assert ids == reference(text)["input_ids"]
    assert ours.decode(ids) == text
    # User text: control-token strings stay plain text (sjjax.data.templates).
    split = ours(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert split == reference(text, add_special_tokens=False,
                              split_special_tokens=True)["input_ids"]
    assert ours.decode(split) == text
    assert (ours.decode(ids, skip_special_tokens=True)
            == reference.decode(ids, skip_special_tokens=True))


def test_digits_are_split_first_like_llama_cpp(ours, reference):
    """SmolLM2's GGUF says `tokenizer.ggml.pre = "smollm"`: llama.cpp splits off each
    digit before GPT-2's regex, as the Digits pre-tokenizer of SmolLM2's own
    tokenizer.json does. transformers' GGUF converter skips that split, which shows
    only on a run of spaces before a digit: sjjax follows the model."""
    from tokenizers import Tokenizer, pre_tokenizers

    assert ours.tokenize("a   12 b") == ["a", "ĠĠĠ", "1", "2", "Ġb"]
    assert reference.tokenize("a   12 b") == ["a", "ĠĠ", "Ġ", "1", "2", "Ġb"]
    # Otherwise the two agree: transformers' tokenizer with only that split added
    # gives sjjax's ids on every text.
    digits_first = Tokenizer.from_str(reference.backend_tokenizer.to_str())
    digits_first.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    for text in TEXTS + DIGIT_TEXTS:
        assert ours(text)["input_ids"] == digits_first.encode(text).ids, text
        assert ours.decode(ours(text)["input_ids"]) == text


# --- other GGUF files: synthetic ones, written with the `gguf` package ------------------


def write_gguf(path, metadata: dict) -> str:
    """A GGUF file holding `metadata` (str/bool/int/float values, lists of them) and
    no tensors."""
    import gguf

    kinds = {bool: gguf.GGUFValueType.BOOL, int: gguf.GGUFValueType.UINT32,
             float: gguf.GGUFValueType.FLOAT32, str: gguf.GGUFValueType.STRING}
    writer = gguf.GGUFWriter(os.fspath(path), metadata.get("general.architecture", "llama"))
    for key, value in metadata.items():
        if key == "general.architecture":
            continue  # GGUFWriter writes it
        if isinstance(value, list):
            writer.add_key_value(key, value, gguf.GGUFValueType.ARRAY,
                                 sub_type=kinds[type(value[0])])
        else:
            writer.add_key_value(key, value, kinds[type(value)])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return os.fspath(path)


@pytest.fixture(scope="module")
def smollm2_metadata(smollm2_gguf):
    from sjjax.model.gguf_io import read_gguf_metadata
    return read_gguf_metadata(smollm2_gguf)


@pytest.mark.slow  # transformers reads each file in ~10 s
@pytest.mark.parametrize("pre", ["qwen2", "llama-bpe", "gpt-2"])
def test_other_pre_tokenizers_match_transformers(tmp_path, smollm2_metadata, pre):
    """SmolLM2's vocabulary under the pre-tokenizer of Qwen2, Llama-3 and GPT-2 files:
    the same ids as transformers' converter (which knows these splits), digits too."""
    path = write_gguf(tmp_path / f"{pre}.gguf", dict(smollm2_metadata, **{
        "tokenizer.ggml.pre": pre}))
    ref = transformers_gguf_tokenizer(path)
    ours = load_tokenizer(path)
    for text in TEXTS + DIGIT_TEXTS:
        assert ours(text)["input_ids"] == ref(text)["input_ids"], (pre, text)


def test_add_bos_token_is_honoured(tmp_path, smollm2_metadata):
    path = write_gguf(tmp_path / "bos.gguf", dict(smollm2_metadata, **{
        "tokenizer.ggml.add_bos_token": True}))
    tok = load_tokenizer(path)
    assert tok("hi")["input_ids"] == [tok.bos_token_id] + tok("hi", add_special_tokens=False)[
        "input_ids"]


TINY_VOCAB = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
              "tokenizer.ggml.tokens": ["<|end|>", "a", "b", "ab"],
              "tokenizer.ggml.token_type": [3, 1, 1, 1], "tokenizer.ggml.merges": ["a b"],
              "tokenizer.ggml.eos_token_id": 0}


def test_tiny_gguf_tokenizer(tmp_path):
    tok = load_tokenizer(write_gguf(tmp_path / "tiny.gguf", dict(TINY_VOCAB)))
    assert tok("abab<|end|>")["input_ids"] == [3, 3, 0]
    assert tok.pad_token_id == tok.eos_token_id == 0 and tok.padding_side == "left"


def _without(key):
    return {k: v for k, v in TINY_VOCAB.items() if k != key}


@pytest.mark.parametrize("metadata, message", [
    ({"general.name": "no tokenizer"}, "has no tokenizer (tokenizer.ggml.model missing)"),
    (dict(TINY_VOCAB, **{"tokenizer.ggml.model": "llama"}),
     "GGUF tokenizer kind 'llama' (tokenizer.ggml.model) is not supported"),
    (dict(TINY_VOCAB, **{"tokenizer.ggml.pre": "mystery"}),
     "GGUF pre-tokenizer 'mystery' (tokenizer.ggml.pre) is not supported"),
    (_without("tokenizer.ggml.merges"), "tokenizer.ggml.merges is missing"),
    (_without("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens is missing"),
    (dict(TINY_VOCAB, **{"tokenizer.ggml.eos_token_id": 9}), "outside the vocabulary"),
], ids=["none", "sentencepiece", "pre", "merges", "tokens", "eos-id"])
def test_unusable_tokenizer_metadata_fails_with_one_line(tmp_path, metadata, message):
    path = write_gguf(tmp_path / "bad.gguf", metadata)
    with pytest.raises(ValueError) as info:
        load_tokenizer(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text
    if "not supported" in message:
        assert isinstance(info.value, UnsupportedTokenizerError)


def test_bad_files_fail_with_one_line(tmp_path):
    good = write_gguf(tmp_path / "good.gguf", dict(TINY_VOCAB))
    data = open(good, "rb").read()
    cases = {"not a GGUF file": b"PK\x03\x04 a zip, say" * 8,
             "truncated GGUF file": data[:len(data) // 2],
             "unsupported GGUF version": data[:4] + b"\x07\x00\x00\x00" + data[8:],
             "empty": b""}
    for message, content in cases.items():
        path = tmp_path / "bad.gguf"
        path.write_bytes(content)
        for load in (load_tokenizer, lambda p: load_pretrained(p, with_tokenizer=False)):
            with pytest.raises(GGUFFormatError) as info:
                load(path)
            text = str(info.value)
            assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        load_tokenizer(tmp_path / "absent.gguf")


# --- no torch at all, in a subprocess ----------------------------------------------------

# Runs first in the child: torch and accelerate look uninstalled. Every finder on
# sys.meta_path is wrapped so that it never finds them: `import torch` raises
# ModuleNotFoundError and importlib.util.find_spec("torch") (transformers' probe)
# returns None, as in a virtualenv without them. (A finder that raised instead would
# break that probe, which an uninstalled package does not.)
_BLOCKER = """
import importlib.abc, sys

BLOCKED = {blocked!r}

class HideBlocked(importlib.abc.MetaPathFinder):
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attr):  # find_distributions, invalidate_caches, ...
        return getattr(self.finder, attr)

sys.meta_path[:] = [HideBlocked(f) for f in sys.meta_path]
for name in BLOCKED:
    try:
        __import__(name)
    except ModuleNotFoundError:
        pass
    else:
        sys.exit(f"the blocker let {{name}} through")
"""

_CHILD = """
import json, os, sys

from transformers.utils import is_torch_available

result = {{"transformers_sees_torch": is_torch_available()}}
gguf_path, run_root = sys.argv[1], sys.argv[2]
if gguf_path:
    from sjjax.model.loading import load_pretrained
    cfg, params, tokenizer = load_pretrained(gguf_path)
    chat = {chat!r}
    result["ids"] = list(tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, return_dict=True)["input_ids"])
    result["vocab_size"] = cfg.vocab_size

from sjjax.phases import run_phase
from tests.phases.tiny_config import small

run_phase(small("jsft", run_root, **{{"train.steps": 3}}))
result["torch_modules"] = sorted(m for m in sys.modules
                                 if m.partition(".")[0] in {blocked!r})
print("RESULT " + json.dumps(result))
"""


@pytest.fixture(scope="module")
def no_torch_run(tmp_path_factory):
    """(parsed RESULT line, run root) of the child run without torch and accelerate."""
    from sjjax import assets

    gguf_path = assets.smollm2_path(must_exist=False)
    gguf_path = gguf_path if os.path.exists(gguf_path) else ""
    root = tmp_path_factory.mktemp("no_torch")
    script = (textwrap.dedent(_BLOCKER).format(blocked=TORCH_PACKAGES)
              + textwrap.dedent(_CHILD).format(chat=CHATS[2], blocked=TORCH_PACKAGES))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", script, gguf_path, str(root)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"child failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):]), root


@pytest.mark.slow
def test_tiny_jsft_trains_without_torch(no_torch_run):
    result, root = no_torch_run
    assert result["transformers_sees_torch"] is False
    assert result["torch_modules"] == []
    run_dir = root / "jsft"
    assert (run_dir / "final" / "meta.json").exists()
    rows = [json.loads(l) for l in open(run_dir / "metrics.jsonl")]
    assert rows[-1]["step"] == 3 and rows[-1]["loss"] == rows[-1]["loss"]  # not NaN


@pytest.mark.slow
def test_smollm2_loads_without_torch(no_torch_run, smollm2_gguf):
    result, _ = no_torch_run
    assert result["vocab_size"] == 49152
    reference = transformers_gguf_tokenizer(smollm2_gguf)
    assert result["ids"] == chat_ids(reference, CHATS[2])


# --- the requirements ----------------------------------------------------------------


def test_core_requirements_name_neither_torch_nor_accelerate():
    from packaging.requirements import Requirement

    requires = [Requirement(r) for r in importlib.metadata.requires("sjjax") or ()]
    core = {r.name.lower() for r in requires if "extra ==" not in str(r.marker or "")}
    assert "jax" in core and "transformers" in core, core
    assert not core & set(TORCH_PACKAGES), (
        f"core requirements name {sorted(core & set(TORCH_PACKAGES))} (if setup.py does "
        "not, the installed metadata is stale: pip install -e .)")
    # torch stays for the tests and benchmarks, pinned to the CPU wheel.
    torch = {(str(r.specifier), str(r.marker)) for r in requires if r.name == "torch"}
    assert torch == {("==2.13.0", 'extra == "test"'), ("==2.13.0", 'extra == "bench"')}, torch
