"""sjjax's JSFT training against PyTorch + transformers, step by step on the same batches.

Runs K optimizer steps of a JSFT config (default: the SmolLM2 recipe's prototype,
`configs/smollm2_judge_recipe.py:prototype`) in sjjax's one training loop, recording
every batch it trains on; then K steps of the same recipe in PyTorch on those batches
from the same initial weights (exported with `save_hf_dir`, loaded by transformers).
The PyTorch side is written here from the config alone, independently of
`sjjax.train.optim`: AdamW with the config's betas, eps and weight decay (matrices only),
the learning-rate schedule, global-norm clipping, frozen embeddings and lower layers,
per-token or per-example loss normalisation. Both sides compute in float32.
The gradient norms compared are those of the trainable part, before clipping (what
`clip_grad_norm_` returns and sjjax logs).

It answers "is a run that does not learn (SmolLM2's judgment loss at ln 2) a bug of
sjjax's training?": if the two trajectories agree, PyTorch trains the same way on the
same data. It prints, per step, the loss and the judgment (decision-token) loss of both,
the largest differences, and the seconds per step of each with their ratio.

    python bench/training_parity.py --config configs/smollm2_judge_recipe.py:prototype \\
        --steps 30 --json runs/bench/training_parity.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


# ---------------------------------------------------------------------------- PyTorch side
def lr_factor(train, total_steps: int):
    """step -> the learning rate's multiple of train.learning_rate: linear warm-up from
    0 over warmup_steps (else warmup_ratio x total), then cosine or linear decay to 0
    over the remaining steps, or constant (transformers' schedules, step counted from 0)."""
    warm = int(train.get("warmup_steps", 0)) or int(round(train.get("warmup_ratio", 0.0)
                                                          * total_steps))
    decay = max(total_steps - warm, 1)
    kind = train.get("schedule", "cosine")

    def factor(step: int) -> float:
        if step < warm:
            return step / warm
        done = min(step - warm, decay) / decay
        if kind == "linear":
            return 1.0 - done
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * done))
        return 1.0
    return factor


class TorchJSFT:
    """The JSFT recipe of `train` (a config.train) on a transformers causal LM."""

    def __init__(self, hf_dir: str, train, total_steps: int):
        import torch
        from transformers import AutoModelForCausalLM
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32)
        self.model.train()
        self.train = train
        inner = self.model.model
        if train.get("freeze_embeddings", False):
            inner.embed_tokens.weight.requires_grad_(False)
            self.model.lm_head.weight.requires_grad_(False)  # the same tensor when tied
        for layer in inner.layers[:int(train.get("freeze_layers", 0))]:
            layer.requires_grad_(False)
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in named]
        # Weight decay on matrices, not on norm scales or biases.
        groups = [{"params": [p for _, p in named if p.ndim >= 2],
                   "weight_decay": float(train.get("weight_decay", 0.0))},
                  {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(
            groups, lr=float(train.learning_rate),
            betas=(train.get("adam_b1", 0.9), train.get("adam_b2", 0.999)),
            eps=train.get("adam_eps", 1e-8))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lr_factor(train, total_steps))

    def step(self, rows: dict) -> dict:
        """One optimizer step on rows (tokens, mask, loss_mask [A, b, T], kind [A, b]):
        the micro-batches are one batch here. -> loss, judge_loss (the decision
        token's NLL, mean over judgments), judge_accuracy, grad_norm (before clipping)."""
        torch = self.torch
        flat = {k: np.asarray(v).reshape(-1, *np.asarray(v).shape[2:]) for k, v in rows.items()}
        ids = torch.tensor(flat["tokens"], dtype=torch.long)
        mask = torch.tensor(flat["mask"], dtype=torch.long)
        target = torch.tensor(flat["loss_mask"][:, 1:], dtype=torch.float32)
        is_judge = torch.tensor(flat["kind"] == 1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1)
        token_logp = logp.gather(-1, ids[:, 1:, None])[..., 0]
        nll = -token_logp * target
        weight = torch.where(is_judge, float(self.train.get("judge_loss_weight", 1.0)), 1.0)
        if self.train.loss_normalization == "token":
            loss = (nll.sum(1) * weight).sum() / target.sum().clamp(min=1e-8)
        else:
            has = (target.sum(1) > 0).float()
            per_row = nll.sum(1) / target.sum(1).clamp(min=1.0)
            loss = (per_row * has * weight).sum() / has.sum().clamp(min=1e-8)
        loss.backward()
        clip = float(self.train.get("max_grad_norm", 0.0))
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip if clip else
                                                         float("inf")))
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():  # the decision token: a judgment's first target token
            first = target.argmax(1)  # index into the shifted positions
            rows_j = torch.nonzero(is_judge)[:, 0]
            pos = first[rows_j]
            decision_nll = nll[rows_j, pos]
            predicted = logp[rows_j, pos].argmax(-1)
            correct = (predicted == ids[rows_j, pos + 1]).float()
        n = max(len(rows_j), 1)
        return {"loss": float(loss.detach()), "grad_norm": grad_norm,
                "judge_loss": float(decision_nll.sum()) / n if len(rows_j) else float("nan"),
                "judge_accuracy": float(correct.sum()) / n if len(rows_j) else float("nan")}


# ---------------------------------------------------------------------------- sjjax side
def load_config(spec: str):
    """"path.py[:arg]" -> the config its get_config(arg) returns."""
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("parity_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def sjjax_run(config, steps: int, hf_dir: str) -> tuple[list[dict], list[dict], dict]:
    """Trains `steps` steps with sjjax's loop, first exporting the initial weights to
    hf_dir. -> (the batches it trained on, its per-step metrics, policy summary)."""
    import jax

    from sjjax.data import datasets
    from sjjax.model.hf_io import save_hf_dir
    from sjjax.phases.common import load_policy
    from sjjax.phases.train import SupervisedTask
    from sjjax.train import trainer
    from sjjax.train.memory import PeakMemory

    memory = PeakMemory()
    policy = load_policy(config)
    # The weights only: transformers reads the batches' token ids, not a tokenizer.
    save_hf_dir(hf_dir, policy.model_config, jax.device_get(policy.params), None,
                dtype="float32")
    prepared = datasets.prepare(config, policy.tokenizer, config.phase)
    stream = datasets.make_stream(config, prepared, policy.tokenizer.pad_token_id)
    batches = []

    class RecordingTask(SupervisedTask):
        def batch(self, step, state):
            made = super().batch(step, state)
            batches.append({k: np.array(v) for k, v in made.rows.items()})
            return made

    trainer.train(config, policy, RecordingTask(config, prepared, stream), steps, memory)
    rows = [json.loads(line) for line in open(os.path.join(config.run_dir, "metrics.jsonl"))]
    rows = [r for r in rows if r.get("phase") == config.phase]
    return batches, rows, {"layers": policy.model_config.num_layers}


def compare(ours: list[dict], peer: list[dict]) -> dict:
    """The largest absolute differences over the steps."""
    out = {}
    for key in ("loss", "judge_loss", "grad_norm"):
        diffs = [abs(a[key] - b[key]) for a, b in zip(ours, peer)
                 if math.isfinite(a.get(key, math.nan)) and math.isfinite(b[key])]
        out[f"max_abs_diff_{key}"] = max(diffs) if diffs else math.nan
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/smollm2_judge_recipe.py:prototype")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config field, e.g. train.freeze_layers=0 (a Python literal)")
    p.add_argument("--workdir", default=None, help="default: a temporary directory")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import ast

    import jax

    from sjjax.presets import set_fields

    jax.config.update("jax_default_matmul_precision", "highest")  # float32 on GPUs too
    config = load_config(args.config)
    set_fields(config, {k: ast.literal_eval(v) for k, v in
                        (item.split("=", 1) for item in args.set)}, "--set")
    work = args.workdir or tempfile.mkdtemp(prefix="sjjax_parity_")
    config.run_dir = os.path.join(work, "sjjax")
    config.data.tfds_dir = os.path.join(work, "tfds")
    config.model.dtype = config.model.param_dtype = "float32"
    config.train.steps = args.steps
    config.log.every_steps = 1
    config.log.tensorboard = False
    config.checkpoint.every_steps = 10 ** 6
    total = int(config.train.steps)

    batches, ours, info = sjjax_run(config, args.steps, os.path.join(work, "hf_init"))
    peer_model = TorchJSFT(os.path.join(work, "hf_init"), config.train, total)
    peer, peer_times = [], []
    for rows in batches:
        started = time.perf_counter()
        peer.append(peer_model.step(rows))
        peer_times.append(time.perf_counter() - started)

    print(f"{args.config} {' '.join(args.set)}: {args.steps} steps, batch "
          f"{batches[0]['tokens'].shape}, {jax.default_backend()} "
          f"({os.cpu_count()} CPU cores)")
    print("step | loss sjjax | loss torch | judge_loss sjjax | judge_loss torch | "
          "grad_norm sjjax | grad_norm torch")
    for i, (a, b) in enumerate(zip(ours, peer)):
        print(f"{i + 1:4d} | {a['loss']:.5f} | {b['loss']:.5f} | "
              f"{a.get('judge_loss', math.nan):.5f} | {b['judge_loss']:.5f} | "
              f"{a['grad_norm']:.4f} | {b['grad_norm']:.4f}")
    result = compare(ours, peer)
    # The step's own time (compile excluded), steps 2.. (the first warms caches).
    ours_s = float(np.median([r["time/update_s"] for r in ours[1:]] or [math.nan]))
    peer_s = float(np.median(peer_times[1:] or [math.nan]))
    result.update(config=args.config, set=args.set, steps=args.steps,
                  batch_shape=list(batches[0]["tokens"].shape), sjjax=ours, torch=peer,
                  sjjax_step_s=ours_s, torch_step_s=peer_s, layers=info["layers"],
                  cpu_cores=os.cpu_count(), backend=jax.default_backend())
    print("largest |difference|: " + ", ".join(
        f"{k[len('max_abs_diff_'):]} {v:.2e}" for k, v in result.items()
        if k.startswith("max_abs_diff_")))
    print(f"seconds per step (median, compile excluded): sjjax {ours_s:.2f}, PyTorch "
          f"{peer_s:.2f}; ratio PyTorch / sjjax {peer_s / ours_s:.2f}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
