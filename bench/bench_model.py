"""Forward and forward+backward tokens/s: sjjax vs PyTorch transformers, SmolLM2-135M,
float32, batch 4 x 256, same run, same machine (on a GPU both run on the card).

    python bench/bench_model.py [--batch 4 --length 256 --repeats 5 --dtype bfloat16 --remat dots]

--dtype sets the weights and the compute of both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import (add_dtype_argument, forward_flops_per_token, hardware_bounds,  # noqa
                          load_torch_smollm2, match_precision, set_threads, smollm2_path,
                          timeit_interleaved, torch_device, torch_sync)
from sjjax.losses import masked_cross_entropy  # noqa: E402
from sjjax.model.attention import IMPLEMENTATIONS as ATTENTION_IMPLEMENTATIONS  # noqa: E402
from sjjax.model.loading import build_model, load_pretrained  # noqa: E402
from sjjax.model.transformer import merge_params, split_params  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--attention", default="auto", choices=ATTENTION_IMPLEMENTATIONS,
                        help="model.attention (auto: cuDNN on a GPU in bf16, else XLA)")
    parser.add_argument("--remat", default="none", choices=("none", "dots", "full"),
                        help="model.remat of the sjjax side (PyTorch keeps every activation)")
    add_dtype_argument(parser)
    args = parser.parse_args()
    set_threads()
    match_precision(args.dtype)
    b, t = args.batch, args.length
    tokens_per_call = b * t

    cfg, params, _ = load_pretrained(smollm2_path(), with_tokenizer=False, dtype=args.dtype,
                                     param_dtype=args.dtype, attention=args.attention,
                                     remat=args.remat)
    graphdef, params, _ = split_params(build_model(cfg, params))
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, cfg.vocab_size, (b, t)), jnp.int32)
    mask = jnp.ones((b, t), bool)

    forward = jax.jit(lambda p, x, m: merge_params(graphdef, p)(x, m)[0])

    def loss_fn(p, x, m):
        logits, _ = merge_params(graphdef, p)(x, m)
        return masked_cross_entropy(logits, x, m)[0]

    grad = jax.jit(jax.grad(loss_fn))

    import torch
    model = load_torch_smollm2(args.dtype)
    ids = torch.tensor(np.asarray(tokens), dtype=torch.long, device=torch_device())

    def torch_forward():
        with torch.no_grad():
            torch_sync(model(input_ids=ids).logits)

    def torch_train():
        model.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch_sync()

    # The two sides take turns in every repeat: this machine's speed drifts by 10% and
    # more over minutes, and turns put the slow spells on both.
    results = {}
    for name, ours, peer in (
            ("forward", lambda: forward(params, tokens, mask).block_until_ready(),
             torch_forward),
            ("train", lambda: jax.block_until_ready(grad(params, tokens, mask)), torch_train)):
        medians = timeit_interleaved({"sjjax": ours, "torch": peer}, repeats=args.repeats)
        results[f"sjjax_{name}_s"], results[f"torch_{name}_s"] = medians["sjjax"], medians["torch"]
    bounds = hardware_bounds(args.dtype)
    flops_tok = forward_flops_per_token(cfg, t / 2)
    print(f"SmolLM2-135M {args.dtype}, attention {args.attention}, remat {args.remat}, "
          f"batch {b} x {t}, "
          f"{bounds['hardware']}; "
          f"matmul peak {bounds['flops_per_s'] / 1e9:.0f} GFLOP/s")
    for name, mult in (("forward", 1), ("train", 3)):
        ours = tokens_per_call / results[f"sjjax_{name}_s"]
        peer = tokens_per_call / results[f"torch_{name}_s"]
        share = ours * mult * flops_tok / bounds["flops_per_s"]
        label = "forward" if name == "forward" else "forward+backward"
        print(f"{label:17s} sjjax {ours:8.1f} tok/s | transformers {peer:8.1f} tok/s | "
              f"ratio {ours / peer:5.2f}x | sjjax at {share:.0%} of the FLOP bound")
        results[f"{name}_ratio"] = ours / peer
        results[f"{name}_sjjax_tok_s"], results[f"{name}_torch_tok_s"] = ours, peer
    results.update(bounds, dtype=args.dtype, batch=b, length=t, attention=args.attention,
                   remat=args.remat)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
