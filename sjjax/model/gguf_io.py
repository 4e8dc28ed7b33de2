"""GGUF (llama.cpp) checkpoints -> sjjax parameters.

Tensors are dequantized with the `gguf` package, renamed to Hugging Face names and
then go through the same mapping as safetensors checkpoints (`hf_io`). llama.cpp
stores the q/k projections of LLaMA-architecture models permuted for its
interleaved RoPE; `unpermute_qk` undoes that, giving the HF "rotate half" layout.

`read_gguf_metadata` reads only the key/value header (the tokenizer lives there);
bad input (not a GGUF file, truncated, unknown version) fails with one line naming
the file.
"""

from __future__ import annotations

import mmap
import os
import re
import struct

import numpy as np

from sjjax.errors import InputNotFoundError, ModelFileError
from sjjax.model.config import ModelConfig, UnsupportedArchitectureError
from sjjax.model.hf_io import hf_tensors_to_params

SUPPORTED_GGUF_ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2"}

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.bias": "self_attn.o_proj.bias",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_LAYER_RE = re.compile(r"^blk\.(\d+)\.(.+)$")


def unpermute_qk(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's convert permutation: per head, the interleaved
    (x0, y0, x1, y1, ...) rows go back to (x0, x1, ..., y0, y1, ...)."""
    half = weight.shape[0] // num_heads // 2
    w = weight.reshape(num_heads, half, 2, *weight.shape[1:])
    return w.swapaxes(1, 2).reshape(weight.shape)


def hf_name(gguf_name: str) -> str | None:
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    match = _LAYER_RE.match(gguf_name)
    if match and match.group(2) in _LAYER_NAMES:
        return f"model.layers.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    return None


class GGUFFormatError(ModelFileError):
    """A file is not a readable GGUF file; the message names the file."""


# GGUF value types (gguf.GGUFValueType) -> struct / numpy format, little-endian.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_GGUF_MAGIC = b"GGUF"


def read_gguf_metadata(path: str | os.PathLike) -> dict:
    """The key/value metadata of a GGUF file (versions 2 and 3), tensors not read.

    Strings come back as `str`, arrays as lists. This is a small parser of its own
    because `gguf.GGUFReader` builds a numpy view per array element: ~5 s for the
    49k tokens and merges of a vocabulary, against ~0.1 s here.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputNotFoundError(f"{path}: GGUF file not found")
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise GGUFFormatError(f"{path}: not a GGUF file (empty)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                return _parse_metadata(buf, path)
            except (struct.error, IndexError) as err:
                raise GGUFFormatError(f"{path}: truncated GGUF file (its metadata runs past "
                                      f"the end of its {len(buf)} bytes); an interrupted "
                                      f"download? Fetch the file again") from err


def _parse_metadata(buf, path: str) -> dict:
    if buf[:4] != _GGUF_MAGIC:
        raise GGUFFormatError(f"{path}: not a GGUF file (magic {bytes(buf[:4])!r}, "
                              f"expected {_GGUF_MAGIC!r})")
    version, _, kv_count = struct.unpack_from("<IQQ", buf, 4)
    if version not in (2, 3):  # v1 had 32-bit lengths; a byte-swapped v3 reads as 3<<24
        raise GGUFFormatError(f"{path}: unsupported GGUF version {version} "
                              "(sjjax reads little-endian GGUF v2 and v3)")
    pos = 24

    def string(pos):
        (n,) = struct.unpack_from("<Q", buf, pos)
        if pos + 8 + n > len(buf):
            raise IndexError("string runs past the end of the file")
        return buf[pos + 8:pos + 8 + n].decode("utf-8", errors="replace"), pos + 8 + n

    def value(kind, pos):
        if kind == _STRING:
            return string(pos)
        if kind in _SCALARS:
            fmt = _SCALARS[kind]
            return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)
        if kind == _ARRAY:
            item_kind, n = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            if item_kind in _SCALARS:  # numeric arrays in one go
                size = n * struct.calcsize(_SCALARS[item_kind])
                if pos + size > len(buf):
                    raise IndexError("array runs past the end of the file")
                items = np.frombuffer(buf, np.dtype(_SCALARS[item_kind]), n, pos).tolist()
                return items, pos + size
            items = []
            for _ in range(n):
                item, pos = value(item_kind, pos)
                items.append(item)
            return items, pos
        raise GGUFFormatError(f"{path}: corrupt GGUF metadata (unknown value type {kind})")

    metadata = {}
    for _ in range(kv_count):
        key, pos = string(pos)
        (kind,) = struct.unpack_from("<I", buf, pos)
        metadata[key], pos = value(kind, pos + 4)
    return metadata


def _field(reader, key, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    value = field.contents()
    return value


def config_from_gguf(reader, path: str, **overrides) -> ModelConfig:
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_GGUF_ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"{path}: unsupported GGUF architecture {arch!r}; sjjax implements "
            f"{sorted(SUPPORTED_GGUF_ARCHITECTURES)}")

    def meta(key, default=None):
        value = _field(reader, f"{arch}.{key}", default)
        if value is None:
            raise GGUFFormatError(f"{path}: GGUF metadata {arch}.{key} is missing")
        return value

    num_heads = int(meta("attention.head_count"))
    hidden = int(meta("embedding_length"))
    names = {t.name for t in reader.tensors}
    vocab = _field(reader, f"{arch}.vocab_size")
    if vocab is None:
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    kwargs = dict(
        model_type=SUPPORTED_GGUF_ARCHITECTURES[arch],
        vocab_size=int(vocab),
        hidden_size=hidden,
        intermediate_size=int(meta("feed_forward_length")),
        num_layers=int(meta("block_count")),
        num_heads=num_heads,
        num_kv_heads=int(meta("attention.head_count_kv", num_heads)),
        head_dim=int(_field(reader, f"{arch}.attention.key_length", hidden // num_heads)),
        rms_norm_eps=float(meta("attention.layer_norm_rms_epsilon")),
        rope_theta=float(meta("rope.freq_base", 10000.0)),
        max_position_embeddings=int(meta("context_length", 2048)),
        tie_word_embeddings="output.weight" not in names,
        attention_bias="blk.0.attn_q.bias" in names,
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
    )
    kwargs.update(overrides)
    return ModelConfig(**kwargs)


def load_gguf(path: str | os.PathLike, **config_overrides) -> tuple[ModelConfig, dict]:
    """Loads a GGUF file -> (config, numpy params in the config's param_dtype)."""
    import gguf

    path = os.fspath(path)
    read_gguf_metadata(path)  # fast header check: one clear line for bad files
    try:
        reader = gguf.GGUFReader(path)
    except ValueError as err:  # e.g. tensor data cut off after a complete header
        size = os.path.getsize(path)
        if "cannot reshape" in str(err) or "larger than" in str(err):
            raise GGUFFormatError(
                f"{path}: truncated GGUF file: its tensor data is cut off at {size} bytes "
                f"({err}); an interrupted download? Fetch the file again") from None
        raise GGUFFormatError(f"{path}: corrupt GGUF file ({err}); fetch the file "
                              f"again") from None
    cfg = config_from_gguf(reader, path, **config_overrides)
    tensors = {}
    for tensor in reader.tensors:
        name = hf_name(tensor.name)
        if name is None:
            if tensor.name.startswith("rope_freqs"):
                continue  # llama.cpp's precomputed rope factors; recomputed from the config
            raise GGUFFormatError(f"{path}: unknown GGUF tensor {tensor.name!r} (not a "
                                  f"tensor of the Llama family that sjjax implements)")
        tensors[name] = tensor

    def get(name: str) -> np.ndarray:
        tensor = tensors[name]
        array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        # GGUF lists dims fastest-first; numpy order is the reverse, i.e. the HF layout.
        array = np.asarray(array, np.float32).reshape(tuple(reversed(
            [int(d) for d in tensor.shape])))
        if cfg.model_type == "llama" and name.endswith("q_proj.weight"):
            array = unpermute_qk(array, cfg.num_heads)
        elif cfg.model_type == "llama" and name.endswith("k_proj.weight"):
            array = unpermute_qk(array, cfg.num_kv_heads)
        return array

    return cfg, hf_tensors_to_params(get, set(tensors), cfg, source=path)
