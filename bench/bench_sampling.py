"""Sampling tokens/s: sjjax's compiled sampler vs transformers `generate`, SmolLM2-135M,
float32, batch 8, prompts of 40-64 tokens, 128 new tokens, top-p 0.9; same run, same
machine (on a GPU both run on the card). Both generate exactly 128 tokens per row (no
early EOS), so tokens/s compare.

    python bench/bench_sampling.py [--batch 8 --new-tokens 128 --repeats 5 --dtype bfloat16]
                                   [--model llama_1b --attention auto]

--model: "smollm2" (the GGUF's weights, both sides) or a name from sjjax.model.presets
(random weights of that architecture on both sides; the prompts still come from SmolLM2's
tokenizer, valid ids of any Llama vocabulary).

Prints the ratio, and each side's share of the memory-bandwidth bound of decoding
(every decode step reads all weights and the filled KV cache once: bound = batch x
bandwidth / (weight bytes + mean KV-cache bytes per step)), with the bandwidth measured
by a large copy in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import (add_dtype_argument, hardware_bounds, load_torch_smollm2,  # noqa
                          match_precision, set_threads, smollm2_path, timeit_interleaved,
                          torch_device, torch_sync)
from sjjax.model.loading import build_model, load_pretrained  # noqa: E402
from sjjax.model.attention import IMPLEMENTATIONS as ATTENTION_IMPLEMENTATIONS  # noqa: E402
from sjjax.model.presets import get_architecture  # noqa: E402
from sjjax.model.transformer import init_model, split_params  # noqa: E402
from sjjax.sampling import Sampler, SamplingParams, left_pad  # noqa: E402


def prompts(tokenizer, batch: int, rng) -> list[list[int]]:
    """Chat prompts of 40-64 tokens (instructions from the synthetic suite and free text)."""
    topics = ["the history of tea", "how rainbows form", "a recipe for bread", "black holes",
              "learning to swim", "the water cycle", "a trip to Japan", "why cats purr",
              "saving money", "the moon landing", "planting tomatoes", "jazz music"]
    out = []
    while len(out) < batch:
        topic = topics[len(out) % len(topics)]
        words = " ".join(["please"] * int(rng.integers(0, 12)))
        text = f"Write a short, friendly paragraph about {topic} for a curious child. {words}"
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                            add_generation_prompt=True, return_dict=True)
        ids = ids["input_ids"]
        if 40 <= len(ids) <= 64:
            out.append(ids)
    return out


def torch_from_config(cfg, dtype: str):
    """transformers' model of the same architecture with random weights, in `dtype`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    hf = {k: v for k, v in cfg.to_hf_dict().items() if k not in ("architectures", "torch_dtype")}
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**hf),
                                             attn_implementation="sdpa",
                                             dtype=getattr(torch, dtype))
    return model.to(torch_device()).eval()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="smollm2",
                        help="smollm2, or a preset name (random weights), e.g. llama_1b")
    parser.add_argument("--attention", default="auto", choices=ATTENTION_IMPLEMENTATIONS)
    parser.add_argument("--json")
    add_dtype_argument(parser)
    args = parser.parse_args()
    set_threads()
    match_precision(args.dtype)
    rng = np.random.default_rng(0)
    cfg, params, tok = load_pretrained(smollm2_path(), dtype=args.dtype, param_dtype=args.dtype,
                                       attention=args.attention)
    rows = prompts(tok, args.batch, rng)
    tokens, mask = left_pad(rows, tok.pad_token_id, multiple=1)

    if args.model == "smollm2":
        graphdef, p, _ = split_params(build_model(cfg, params))
    else:
        cfg = get_architecture(args.model, dtype=args.dtype, param_dtype=args.dtype,
                               attention=args.attention)
        graphdef, p, _ = split_params(init_model(cfg))
    weight_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(p))
    # Mean cache slots read per decode step (the sampler reads the filled window).
    slots = tokens.shape[1] + args.new_tokens / 2
    kv_bytes = (2 * cfg.num_layers * args.batch * slots * cfg.num_kv_heads * cfg.head_dim
                * jax.numpy.dtype(cfg.compute_dtype).itemsize)
    del params
    # No EOS: every row generates exactly new_tokens tokens, as the peer is told to.
    sampler = Sampler(graphdef, cfg, max_new_tokens=args.new_tokens, eos_ids=[-1],
                      pad_id=tok.pad_token_id)
    sp = SamplingParams(temperature=1.0, top_p=0.9)
    keys = iter(range(1000))

    def ours():
        jax.block_until_ready(
            sampler(p, None, tokens, mask, jax.random.key(next(keys)), sp).tokens)

    import torch
    model = (load_torch_smollm2(args.dtype) if args.model == "smollm2"
             else torch_from_config(cfg, args.dtype))
    ids = torch.tensor(tokens, dtype=torch.long, device=torch_device())
    am = torch.tensor(mask, dtype=torch.long, device=torch_device())

    def peer():
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=am, do_sample=True, top_p=0.9,
                           temperature=1.0, top_k=0, max_new_tokens=args.new_tokens,
                           min_new_tokens=args.new_tokens, pad_token_id=tok.pad_token_id)
        torch_sync()

    medians = timeit_interleaved({"ours": ours, "peer": peer}, repeats=args.repeats)
    ours_s, peer_s = medians["ours"], medians["peer"]
    bounds = hardware_bounds(args.dtype)
    n = args.batch * args.new_tokens
    bound = args.batch * bounds["bytes_per_s"] / (weight_bytes + kv_bytes)  # tokens/s
    ours, theirs = n / ours_s, n / peer_s
    name = "SmolLM2-135M" if args.model == "smollm2" else f"{args.model} (random weights)"
    print(f"{name} {args.dtype} sampling, attention {args.attention}, batch {args.batch}, "
          f"prompts "
          f"{mask.sum(1).min()}-{mask.sum(1).max()} tokens, {args.new_tokens} new tokens, "
          f"top-p 0.9; {bounds['hardware']}, copy bandwidth {bounds['bytes_per_s'] / 1e9:.1f} GB/s")
    print(f"sjjax {ours:7.1f} tok/s ({ours / bound:.0%} of the bandwidth bound) | "
          f"transformers generate {theirs:7.1f} tok/s ({theirs / bound:.0%}) | "
          f"ratio {ours / theirs:.2f}x | bound {bound:.0f} tok/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(sjjax_tok_s=ours, peer_tok_s=theirs, ratio=ours / theirs,
                           bound_tok_s=bound, bound_share=ours / bound, model=args.model,
                           attention=args.attention, weight_bytes=weight_bytes,
                           kv_bytes_per_step=kv_bytes, dtype=args.dtype, batch=args.batch,
                           **bounds),
                      f, indent=2)


if __name__ == "__main__":
    main()
