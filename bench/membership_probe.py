"""Can the tiny architecture learn set membership at all, and at which learning rate?

The check-first judge's one hard step is membership ("83 is not in the question"), and
the tiny model does not learn it inside the suite (docs/results.md). This probe strips
the task to bare tokens: a sequence [x_1 .. x_L, SEP, q, ASK] of L distinct numbers
(tokens 0-99) and a query q, present or absent with probability 1/2; the target at ASK is
YES or NO. `--layout query-first` asks in the suite's order instead, [q, SEP, x_1 .. x_L,
ASK] ("Is 83 in the list 58, 23, ...?"), and `--suffix K` puts K fixed tokens before ASK
(the suite's format instruction and chat template stand between the list and the answer).
`--suite pairs` (or digits) trains on the suite's own membership prompts instead (its
text, template and tiny tokenizer; fresh tasks, the loss on the answer token only):
the bridge between the bare task and `configs/skill_sft.py:membership`.
`--min-length M` draws each row's list length from M..L (the suite mixes 3, 5 and 8),
left-padding shorter rows, so that the query's position varies from row to row.
`--near` draws an absent query as the suite's levels 2-3 do: a near miss of a listed
number (digits reversed, or off by one; numbers 10-99).

The model is `config.model.tiny`'s architecture (4 layers, d=256, tied embeddings),
trained from scratch with AdamW (weight decay 0.01, constant learning rate)
on fresh batches. The same task, data and architecture run in PyTorch + transformers'
LlamaForCausalLM (`--framework torch`) as the independent check that a plateau is the
optimisation's and not sjjax's.

    python bench/membership_probe.py --lr 1e-3 --lr 3e-4 --steps 1000   # jax
    python bench/membership_probe.py --framework torch --lr 1e-3 --lr 3e-4 --steps 1000

Prints, per learning rate, the loss and accuracy every 100 steps (the accuracy is on the
batch just trained on, of fresh examples: held-out by construction) and the first step
at which the accuracy over the last 20 batches reaches 0.95; `--out F` writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

SEP, YES, NO, ASK = 100, 101, 102, 103
FILLER = 104                 # the suffix's tokens: FILLER, FILLER + 1, ...
PAD = 127                    # left padding of rows whose list is shorter (--min-length)
VOCAB = 128
LAYOUTS = ("list-first", "query-first")
ARCH = dict(hidden_size=256, intermediate_size=768, num_layers=4, num_heads=8,
            num_kv_heads=4, head_dim=32)


def near_miss(rng: np.random.Generator, items) -> int:
    """An absent two-digit number next to a listed one: digits reversed, or +-1 (the
    suite's `membership` levels 2-3); a random absent one where none exists."""
    listed = set(int(x) for x in items)
    candidates = [c for x in listed for c in (int(str(x)[::-1]), x + 1, x - 1)
                  if 10 <= c <= 99 and c not in listed]
    return int(rng.choice(candidates)) if candidates else int(
        rng.choice(np.setdiff1d(np.arange(10, 100), list(listed))))


def membership_batch(rng: np.random.Generator, n: int, length: int,
                     layout: str = "list-first", suffix: int = 0, near: bool = False,
                     min_length: int | None = None):
    """-> tokens [n, length + 3 + suffix] int32, target [n] (YES/NO), present [n] bool,
    at [n] int32 (ASK's position: the last).

    With min_length < length each row's list has a length drawn from min_length..length
    and the row is left-padded with PAD (an ordinary token: the probe has no attention
    mask): the query's position then varies from row to row, as in the suite (whose
    lists have 3, 5 or 8 numbers)."""
    min_length = length if min_length is None else min_length
    if layout not in LAYOUTS or not 0 <= suffix < PAD - FILLER or not 1 <= min_length <= length:
        raise ValueError(f"layout {layout!r} (expected one of {LAYOUTS}), suffix {suffix} "
                         f"(expected 0..{PAD - FILLER - 1}), lengths {min_length}..{length}")
    low = 10 if near else 0
    present = rng.random(n) < 0.5
    fixed = list(range(FILLER, FILLER + suffix))
    rows = []
    for is_present in present:
        xs = low + rng.choice(100 - low, rng.integers(min_length, length + 1), replace=False)
        if is_present:
            query = xs[rng.integers(0, len(xs))]
        elif near:
            query = near_miss(rng, xs)
        else:
            query = rng.choice(np.setdiff1d(np.arange(100), xs))
        body = [*xs, SEP, query] if layout == "list-first" else [query, SEP, *xs]
        rows.append([PAD] * (length - len(xs)) + body + fixed + [ASK])
    tokens = np.array(rows, np.int32)
    return (tokens, np.where(present, YES, NO).astype(np.int32), present,
            np.full(n, tokens.shape[1] - 1, np.int32))


class SuiteBatches:
    """The suite's own membership prompts (`sjjax.data.synthetic`, levels 1-3, both
    wordings, absent queries near misses from level 2) in the tiny chat template and
    tokenizer, followed by "The answer is"; the target is the next token, " yes" or
    " no". Fresh tasks every batch, right-padded to `width` tokens. Bridges the bare probe
    and `configs/skill_sft.py:membership`: the suite's text with the probe's training."""

    def __init__(self, numbers: str = "pairs", width: int = 64):
        from sjjax.data.templates import resolve_judge_tokens
        from sjjax.data.tiny_tokenizer import build_tiny_tokenizer
        self.tokenizer = build_tiny_tokenizer(numbers=numbers)
        self.width = width
        # the judge's single-token check serves the answer tokens too
        self.answer_ids = dict(zip(("yes", "no"),
                                   resolve_judge_tokens(self.tokenizer, (" yes", " no"))))

    @property
    def vocab(self) -> int:
        return len(self.tokenizer)

    def __call__(self, rng: np.random.Generator, n: int):
        """-> tokens [n, width] int32, target [n] (the answer's token), present [n] bool,
        at [n] int32 (the position whose next token is the answer: "is")."""
        from sjjax.data.synthetic.tasks import generate
        tasks = generate(int(rng.integers(1 << 30)), -(-n // 3), families=("membership",),
                         levels=(1, 2, 3))
        tasks = [tasks[i] for i in rng.permutation(len(tasks))[:n]]
        rows, at = [], []
        for task in tasks:
            text = self.tokenizer.apply_chat_template(
                [dict(role="user", content=task.question)], tokenize=False,
                add_generation_prompt=True) + "The answer is"
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) > self.width:
                raise ValueError(f"a membership prompt is {len(ids)} tokens, over --width "
                                 f"{self.width}")
            # right-padded: under the causal mask the pads after the answer's position
            # cannot change it (left pads, unmasked here, would be attended)
            rows.append(ids + [self.tokenizer.pad_token_id] * (self.width - len(ids)))
            at.append(len(ids) - 1)
        present = np.array([t.answer == "yes" for t in tasks])
        target = np.array([self.answer_ids[t.answer] for t in tasks], np.int32)
        return np.array(rows, np.int32), target, present, np.array(at, np.int32)


def _jax_trainer(lr: float, seed: int, vocab: int = VOCAB, positions: int = 64):
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from sjjax.model.config import ModelConfig
    from sjjax.model.transformer import init_model
    cfg = ModelConfig(vocab_size=vocab, tie_word_embeddings=True,
                      max_position_embeddings=positions,
                      **ARCH)
    model = init_model(cfg, seed=seed)
    opt = nnx.Optimizer(model, optax.adamw(lr, weight_decay=0.01), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, tokens, target, at):
        def loss_fn(m):
            logits = m(tokens)[0][jnp.arange(tokens.shape[0]), at]   # [B, V] at ASK
            logp = jax.nn.log_softmax(logits)
            loss = -jnp.take_along_axis(logp, target[:, None], 1).mean()
            return loss, (logits.argmax(-1) == target).mean()
        (loss, acc), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        opt.update(model, grads)
        return loss, acc

    return lambda tokens, target, at: tuple(map(float, step(
        model, opt, jnp.asarray(tokens), jnp.asarray(target), jnp.asarray(at))))


def _torch_trainer(lr: float, seed: int, vocab: int = VOCAB, positions: int = 64):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    # Shapes this small gain nothing from threads, and beside a running XLA job torch's
    # OpenMP threads contend for the cores (measured: 10x slower per step).
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab, hidden_size=ARCH["hidden_size"],
        intermediate_size=ARCH["intermediate_size"], num_hidden_layers=ARCH["num_layers"],
        num_attention_heads=ARCH["num_heads"], num_key_value_heads=ARCH["num_kv_heads"],
        head_dim=ARCH["head_dim"], tie_word_embeddings=True,
        max_position_embeddings=positions))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)

    def step(tokens, target, at):
        tokens, target = torch.as_tensor(tokens).long(), torch.as_tensor(target).long()
        logits = model(tokens).logits[torch.arange(len(tokens)), torch.as_tensor(at).long()]
        loss = torch.nn.functional.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item(), (logits.argmax(-1) == target).float().mean().item()
    return step


def probe(framework: str, lr: float, steps: int, batch: int, length: int, seed: int,
          layout: str = "list-first", suffix: int = 0, near: bool = False,
          min_length: int | None = None, suite: str = "") -> dict:
    """suite: "" (the bare task) or the tiny tokenizer's numbers ("digits" | "pairs"):
    the suite's own prompts (SuiteBatches), the other task options then unused."""
    if suite:
        batches = SuiteBatches(numbers=suite)
        vocab, positions = batches.vocab, batches.width
    else:
        def batches(rng, n):
            return membership_batch(rng, n, length, layout, suffix, near, min_length)
        vocab, positions = VOCAB, 64
    trainer = (_jax_trainer if framework == "jax" else _torch_trainer)(lr, seed, vocab,
                                                                       positions)
    rng = np.random.default_rng(seed)
    log, accs, learnt_at, start = [], [], None, time.time()
    for i in range(steps):
        tokens, target, _, at = batches(rng, batch)
        loss, acc = trainer(tokens, target, at)
        accs.append(acc)
        running = float(np.mean(accs[-20:]))
        if running >= 0.95 and learnt_at is None and i >= 19:
            learnt_at = i
        if i % 100 == 0 or i == steps - 1:
            log.append(dict(step=i, loss=round(loss, 4), acc=round(acc, 3)))
            print(f"{framework} lr={lr:g} step {i}: loss {loss:.4f} acc {acc:.3f} "
                  f"({time.time() - start:.0f}s)", flush=True)
    return dict(framework=framework, lr=lr, steps=steps, batch=batch, length=length,
                layout=layout, suffix=suffix, near=near, min_length=min_length or length,
                suite=suite, seed=seed, final_acc_20=float(np.mean(accs[-20:])), learnt_at=learnt_at,
                log=log, seconds=round(time.time() - start, 1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--framework", choices=("jax", "torch"), default="jax")
    p.add_argument("--lr", type=float, action="append", default=[])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--length", type=int, default=5, help="numbers in the list")
    p.add_argument("--layout", choices=LAYOUTS, default="list-first")
    p.add_argument("--suffix", type=int, default=0, help="fixed tokens before ASK")
    p.add_argument("--near", action="store_true", help="absent queries are near misses")
    p.add_argument("--min-length", type=int, default=None,
                   help="list lengths drawn from this..--length (rows left-padded)")
    p.add_argument("--suite", choices=("", "digits", "pairs"), default="",
                   help="the suite's membership prompts, tiny tokenizer with these numbers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    results = [probe(args.framework, lr, args.steps, args.batch, args.length, args.seed,
                     args.layout, args.suffix, args.near, args.min_length, args.suite)
               for lr in (args.lr or [1e-3, 3e-4])]
    for r in results:
        print(f"{r['framework']} lr={r['lr']:g}: accuracy over the last 20 batches "
              f"{r['final_acc_20']:.3f}; >= 0.95 from step {r['learnt_at']} "
              f"({r['seconds']:.0f}s)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
