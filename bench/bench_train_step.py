"""JSFT training-step throughput and MFU: sjjax's compiled step vs a PyTorch +
transformers step with the same recipe, on a random-init model of a named architecture
(default `llama_1b`, Llama-3.2-1B's shapes), same run, same machine.

    python bench/bench_train_step.py [--model llama_1b --batch 4 --length 2048 --repeats 5]
                                     [--attention auto|xla|cudnn|splash --loss-chunk 512]

Recipe on both sides: float32 weights, bfloat16 compute (sjjax: `dtype=bfloat16`; the
peer: `torch.autocast`), AdamW, gradient clipping at 1.0, cross-entropy on every token.
sjjax runs `sjjax.train.steps.make_sft_step` (the JSFT phase's step) jitted with the
state donated, as the training loop does, with `model.attention` (auto: cuDNN flash
attention on a GPU) and `train.loss_chunk` as given.

MFU = model FLOPs of a step (3 x the forward's matmul FLOPs, attention included, at the
mean causal context) / step time / peak, with the peak both as the bf16 matmul
throughput measured in the same run and, where the card is known, its datasheet figure.
The peer runs first and frees its memory (`torch.cuda.empty_cache`) before sjjax
allocates, so a 1B model fits on one card for both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import (forward_flops_per_token, hardware_name, matmul_flops_per_s,  # noqa
                          set_threads, timeit, torch_device, torch_sync)
from sjjax.model.attention import IMPLEMENTATIONS as ATTENTION_IMPLEMENTATIONS  # noqa: E402
from sjjax.model.attention import resolve as resolve_attention  # noqa: E402
from sjjax.model.presets import get_architecture  # noqa: E402
from sjjax.model.transformer import init_model, split_params  # noqa: E402
from sjjax.train.optim import make_optimizer  # noqa: E402
from sjjax.train.steps import LossSpec, TrainState, make_sft_step  # noqa: E402

# Dense bf16 tensor-core peaks from NVIDIA's datasheets (SXM parts), FLOP/s.
DATASHEET_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}

TRAIN = dict(learning_rate=1e-5, schedule="constant", warmup_ratio=0.0, max_grad_norm=1.0,
             weight_decay=0.0)


def datasheet_peak(name: str) -> float | None:
    return next((v for k, v in DATASHEET_BF16.items() if k in name), None)


def planned_step(model: str, batch: int, length: int, remat: str, device_memory_gib: float,
                 attention: str = "auto", loss_chunk: int = 512, accelerator: str | None = None):
    """The planner's estimate (`sjjax.plan.Plan`) of this benchmark's sjjax step on one
    device with `device_memory_gib` of memory: the same numbers `python -m sjjax.plan
    --config=configs/jsft.py` prints, computed before anything is allocated."""
    from sjjax import presets
    from sjjax.plan import plan_config
    c = presets.make("jsft", "tiny")
    c.model.source = model
    c.model.dtype, c.model.param_dtype, c.model.remat = "bfloat16", "float32", remat
    c.model.attention, c.train.loss_chunk = attention, loss_chunk
    c.data.batch_size, c.data.max_length, c.data.buckets = batch, length, (length,)
    c.train.grad_accum = 1
    c.mesh.shape = (1, 1, 1)
    return plan_config(c, num_devices=1, device_memory_gib=device_memory_gib,
                       accelerator=accelerator)


def planner_accelerator(name: str) -> str | None:
    """The planner's device key of this card ('NVIDIA H100 80GB HBM3' -> 'h100'), so that
    model.attention="auto" resolves as on the card; None where it is not catalogued."""
    return next((k.lower() for k in ("H100", "H200", "A100") if k in name), None)


def peer_step_seconds(cfg, tokens: np.ndarray, repeats: int) -> float:
    """transformers' model of the same architecture, float32 weights under bf16 autocast,
    AdamW (fused on CUDA), clipping: one full optimizer step per call."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    device = torch_device()
    hf = cfg.to_hf_dict()
    hf_config = AutoConfig.for_model(**{k: v for k, v in hf.items()
                                        if k not in ("architectures", "torch_dtype")})
    model = AutoModelForCausalLM.from_config(hf_config, attn_implementation="sdpa",
                                             dtype=torch.float32).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=TRAIN["learning_rate"],
                            weight_decay=0.0, fused=device == "cuda")
    ids = torch.tensor(tokens, dtype=torch.long, device=device)

    def step():
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["max_grad_norm"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch_sync()

    seconds = timeit(step, warmup=2, repeats=repeats)
    del model, opt, ids
    if device == "cuda":
        torch.cuda.empty_cache()
    return seconds


def sjjax_step_seconds(cfg, tokens: np.ndarray, repeats: int, loss_chunk: int = 512) -> float:
    graphdef, params, _ = split_params(init_model(cfg))
    optimizer, _ = make_optimizer(ml_collections.ConfigDict(TRAIN), total_steps=1000)
    state = TrainState(params, jax.jit(optimizer.init)(params), jnp.zeros((), jnp.int32),
                       jax.random.key_data(jax.random.key(0)))
    step = jax.jit(make_sft_step(graphdef, optimizer, LossSpec(loss_chunk=loss_chunk)),
                   donate_argnums=(0,))
    b, t = tokens.shape
    # One micro-batch: the [A, b, T] layout of the training loop with A = 1.
    batch = {"tokens": jnp.asarray(tokens[None], jnp.int32),
             "mask": jnp.ones((1, b, t), bool), "loss_mask": jnp.ones((1, b, t), bool),
             "kind": jnp.zeros((1, b), jnp.int32)}
    holder = [state]

    def run():
        holder[0], metrics = step(holder[0], {}, batch)
        metrics["loss"].block_until_ready()

    seconds = timeit(run, warmup=2, repeats=repeats)
    del holder, state, params
    return seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="llama_1b", help="a name from sjjax.model.presets")
    parser.add_argument("--num-layers", type=int, help="a shallower copy (smoke tests)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--remat", default="none", choices=("none", "full", "dots"))
    parser.add_argument("--attention", default="auto", choices=ATTENTION_IMPLEMENTATIONS)
    parser.add_argument("--loss-chunk", type=int, default=512,
                        help="train.loss_chunk: positions per chunk of the loss (0 = whole)")
    parser.add_argument("--json")
    args = parser.parse_args()
    set_threads()
    overrides = dict(dtype="bfloat16", param_dtype="float32", remat=args.remat,
                     attention=args.attention)
    if args.num_layers:
        overrides["num_layers"] = args.num_layers
    cfg = get_architecture(args.model, **overrides)
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats and not args.num_layers:
        # On an accelerator, refuse a step the planner says cannot fit rather than fail
        # deep inside XLA's autotuner with a multi-GiB allocation error.
        from sjjax.plan import verdict
        plan = planned_step(args.model, args.batch, args.length, args.remat,
                            stats["bytes_limit"] / 2**30, args.attention, args.loss_chunk,
                            planner_accelerator(hardware_name()))
        print(f"planner: {verdict(plan)}")
        if not plan.fits:
            raise SystemExit(f"{args.model} at batch {args.batch} x {args.length} with remat "
                             f"{args.remat} does not fit on this device by the planner; use "
                             f"--remat full or a smaller --batch / --length")
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.vocab_size, (args.batch, args.length))

    peer_s = peer_step_seconds(cfg, tokens, args.repeats)
    ours_s = sjjax_step_seconds(cfg, tokens, args.repeats, args.loss_chunk)
    peak = matmul_flops_per_s(dtype="bfloat16")
    name = hardware_name()
    sheet = datasheet_peak(name)
    step_flops = 3 * forward_flops_per_token(cfg, args.length / 2) * tokens.size
    n_params = cfg.num_params()
    rows = {}
    for side, seconds in (("sjjax", ours_s), ("peer", peer_s)):
        rows[side] = dict(step_s=seconds, tokens_s=tokens.size / seconds,
                          mfu_measured=step_flops / seconds / peak,
                          mfu_datasheet=step_flops / seconds / sheet if sheet else None)
    kernel = resolve_attention(args.attention, dtype=cfg.compute_dtype, head_dim=cfg.head_dim,
                               q_len=args.length, kv_len=args.length)
    print(f"{args.model} ({n_params / 1e9:.2f}B parameters, {cfg.num_layers} layers), "
          f"JSFT step: AdamW, float32 weights, bf16 compute, batch {args.batch} x "
          f"{args.length}, remat {args.remat}, attention {args.attention} ({kernel}), "
          f"loss_chunk {args.loss_chunk}; {name}; bf16 matmul peak measured "
          f"{peak / 1e12:.1f} TFLOP/s" + (f", datasheet {sheet / 1e12:.0f}" if sheet else ""))
    for side, label in (("sjjax", "sjjax"), ("peer", "transformers + torch.autocast")):
        r = rows[side]
        sheet_txt = f", {r['mfu_datasheet']:.1%} of the datasheet" if sheet else ""
        print(f"{label:30s} {r['step_s'] * 1e3:8.1f} ms/step {r['tokens_s']:10.0f} tok/s  "
              f"MFU {r['mfu_measured']:.1%} of the measured peak{sheet_txt}")
    print(f"ratio {peer_s / ours_s:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(model=args.model, batch=args.batch, length=args.length,
                           remat=args.remat, attention=args.attention, attention_kernel=kernel,
                           loss_chunk=args.loss_chunk, hardware=name, peak_flops_per_s=peak,
                           datasheet_flops_per_s=sheet, step_flops=step_flops,
                           ratio=peer_s / ours_s, **{f"{k}_{m}": v for k, r in rows.items()
                                                     for m, v in r.items()}), f, indent=2)


if __name__ == "__main__":
    main()
