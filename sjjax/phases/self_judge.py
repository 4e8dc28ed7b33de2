"""On-policy self-training (`configs/self_judge.py`).

Policy pi is initialised from the Judge Model (JM); the reference pi_ref is the frozen
JM, which is also the judge. Each step:

  1. sample 2 responses per prompt from the *current* policy (compiled sampler);
  2. judge each pair with pi_ref (one batched forward, both orders);
  3. take a DPO step on (chosen, rejected), chosen and rejected in one forward,
     reference log-probs without gradients.

Pairs whose two responses are identical carry no signal; they are counted and kept
out of the loss and of the batch statistics. On the synthetic suite the oracle
labels every pair too, giving the judge's agreement with the truth on the policy's
own samples and the oracle accuracy of those samples.

With LoRA, the policy, the reference and the judge share one copy of the base
weights: the reference and the judge are the base with adapters off.
"""

from __future__ import annotations

import logging

import jax
import numpy as np

from sjjax.config import ConfigError
from sjjax.data.sources import load_oracle, load_prompts
from sjjax.data.templates import ChatEncoder, JudgePromptBuilder
from sjjax.judge import Judge
from sjjax.losses import DPOType
from sjjax.metrics import summary_line
from sjjax.phases.common import load_policy, sampling_params
from sjjax.sampling import Sampler, bucket, decode_response, left_pad
from sjjax.train import loop
from sjjax.train.optim import make_optimizer
from sjjax.train.steps import LossSpec, make_dpo_step

log = logging.getLogger("sjjax")


def validate(config) -> None:
    sj = config.self_judge
    if sj.prompts_per_step % config.train.grad_accum:
        raise ConfigError(f"config.self_judge.prompts_per_step={sj.prompts_per_step} is not a "
                          f"multiple of config.train.grad_accum={config.train.grad_accum}")
    if config.dpo.loss_type not in DPOType.__args__:
        raise ConfigError(f"config.dpo.loss_type: {config.dpo.loss_type!r} not in "
                          f"{DPOType.__args__}")
    if config.dpo.beta <= 0:
        raise ConfigError("config.dpo.beta: must be > 0")
    if sj.judge not in ("reference", "policy"):
        raise ConfigError(f"config.self_judge.judge: {sj.judge!r}; expected reference|policy")


def prompts_for_step(num_prompts: int, per_step: int, step: int, seed: int) -> np.ndarray:
    """Indices of the prompts of a step: epochs of seeded permutations, concatenated.
    A pure function of the step, so a resumed run sees the same prompts."""
    start = step * per_step
    indices = []
    while len(indices) < per_step:
        epoch, offset = divmod(start + len(indices), num_prompts)
        order = np.random.default_rng([seed, epoch]).permutation(num_prompts)
        indices.extend(order[offset:offset + per_step - len(indices)].tolist())
    return np.asarray(indices)


def dpo_rows(prompt_ids, chosen, rejected, valid, pad_id: int, accum: int, multiple: int):
    """Pairs -> a DPO batch [A, 2p, T] (per micro-batch: p chosen rows, then p rejected).

    prompt_ids: list of int arrays; chosen/rejected: token lists (EOS included);
    loss on the response tokens only."""
    n = len(prompt_ids)
    p = n // accum
    rows = [np.concatenate([prompt_ids[i], r]) for resp in (chosen, rejected)
            for i, r in enumerate(resp)]
    width = bucket(max(len(r) for r in rows), multiple)
    tokens = np.full((2 * n, width), pad_id, np.int32)
    mask = np.zeros((2 * n, width), bool)
    loss_mask = np.zeros((2 * n, width), bool)
    for j, row in enumerate(rows):
        tokens[j, :len(row)] = row
        mask[j, :len(row)] = True
        loss_mask[j, len(prompt_ids[j % n]):len(row)] = True
    order = np.concatenate([np.concatenate([np.arange(a * p, (a + 1) * p),
                                            n + np.arange(a * p, (a + 1) * p)])
                            for a in range(accum)])
    shape = lambda x: x[order].reshape(accum, 2 * p, *x.shape[1:])  # noqa: E731
    return {"tokens": shape(tokens), "mask": shape(mask), "loss_mask": shape(loss_mask),
            "valid": np.asarray(valid, bool).reshape(accum, p)}


def pair_outcomes(samples, scores, a_wins):
    """Per pair: identical?, oracle-informative?, judge agrees with the oracle?"""
    identical = np.array([a == b for a, b in samples])
    if scores is None:
        return identical, None, None
    sa, sb = scores[:, 0], scores[:, 1]
    informative = (sa != sb) & ~identical
    agree = np.where(informative, a_wins == (sa > sb), False)
    return identical, informative, agree


def run(config):
    memory = loop.PeakMemory()  # before any weights are loaded
    policy = load_policy(config)
    tok = policy.tokenizer
    sj = config.self_judge
    prompts = load_prompts(config, split="train")
    oracle = load_oracle(config)
    total = int(sj.steps)
    ctx = loop.open_run(config, policy.model_config, tok, total, memory)
    mesh, rules = ctx.mesh, ctx.rules

    weights = loop.prepare_weights(policy, config, mesh, rules, needs_reference=True)
    use_lora, graphdef = weights.use_lora, weights.graphdef
    frozen, ref, base = weights.frozen, weights.ref, weights.base

    optimizer, schedule = make_optimizer(config.train, total)
    state = loop.init_state(weights.trainable, optimizer, config.seed, mesh)
    state, meta = loop.restore_state(ctx, state)
    spec = LossSpec(lora=use_lora, beta=config.dpo.beta, dpo_type=config.dpo.loss_type,
                    label_smoothing=config.dpo.label_smoothing)
    step_fn = None

    sampler = Sampler(graphdef, policy.model_config, max_new_tokens=config.sampling.max_new_tokens,
                      eos_ids=policy.eos_ids, pad_id=tok.pad_token_id)
    builder = JudgePromptBuilder.from_config(tok, config.judge)
    # The judge runs on the policy's graph; the reference is that graph with adapters off.
    judge = Judge(graphdef, builder, batch_size=config.judge.batch_size,
                  max_length=config.judge.max_length, pad_id=tok.pad_token_id)
    encoder = ChatEncoder(tok)
    sampling = sampling_params(config.sampling)
    prompt_ids = [encoder.encode_prompt(list(p.messages)) for p in prompts]

    progress = loop.Progress(total, ctx.start_step, "self_judge", config.log.progress)
    last_saved = ctx.start_step or None
    row = {}
    for step in range(ctx.start_step, total):
        timer = loop.Timer()
        idx = prompts_for_step(len(prompts), sj.prompts_per_step, step, config.seed)
        tokens, mask = left_pad([prompt_ids[i] for i in idx], tok.pad_token_id,
                                config.sampling.prompt_bucket)
        key = jax.random.fold_in(jax.random.wrap_key_data(state.key), step)
        out = sampler(_policy_params(state, frozen, use_lora), _policy_lora(state, use_lora),
                      tokens, mask, key, sampling, num_samples=2)
        lengths = np.asarray(out.lengths)
        gen = np.asarray(out.tokens)
        responses = [gen[r, :lengths[r]] for r in range(len(gen))]
        t_sample = timer.lap()

        texts = [decode_response(tok, r, policy.eos_ids) for r in responses]
        pairs = [(prompts[i].context, texts[2 * k], texts[2 * k + 1]) for k, i in enumerate(idx)]
        if sj.judge == "reference":  # the frozen JM: base weights, adapters off
            judged = judge(base, _policy_lora(state, use_lora), pairs, use_lora=False)
        else:  # ablation: the current policy judges its own samples
            judged = judge(_policy_params(state, frozen, use_lora), _policy_lora(state, use_lora),
                           pairs)
        t_judge = timer.lap()

        samples = [(tuple(responses[2 * k]), tuple(responses[2 * k + 1])) for k in range(len(idx))]
        scores = None
        if oracle is not None:
            scores = np.array([[oracle(prompts[i].meta, texts[2 * k + j]) for j in (0, 1)]
                               for k, i in enumerate(idx)])
        identical, informative, agree = pair_outcomes(samples, scores, judged.a_wins)
        chosen = [responses[2 * k + (0 if w else 1)] for k, w in enumerate(judged.a_wins)]
        rejected = [responses[2 * k + (1 if w else 0)] for k, w in enumerate(judged.a_wins)]
        batch = dpo_rows([prompt_ids[i] for i in idx], chosen, rejected, ~identical,
                         tok.pad_token_id, config.train.grad_accum, config.data.length_bucket)
        batch = loop.batch_to_device(batch, mesh, rules)
        if step_fn is None:
            step_fn = loop.compile_step(make_dpo_step(graphdef, optimizer, spec, schedule), state,
                                        (frozen, ref), batch, mesh)
        if (~identical).any():
            state, metrics = step_fn(state, frozen, ref, batch)
            metrics = jax.device_get(metrics)
            loop.check_finite(metrics, step, config.run_dir, last_saved)
        else:  # nothing to learn from: keep the weights, advance the step
            state = state._replace(step=state.step + 1)
            metrics = {"loss": float("nan"), "pairs": 0}
        t_update = timer.lap()

        row = {k: float(v) for k, v in metrics.items()}
        row.update({
            "pairs/identical": float(identical.mean()),
            # over distinct pairs: identical responses are judged the same in both orders
            "judge/position_consistency": (float(judged.consistent[~identical].mean())
                                           if (~identical).any() else float("nan")),
            "judge/ties": judged.ties,
            "response/length_mean": float(lengths.mean()),
            "response/eos_rate": float(np.mean(lengths < config.sampling.max_new_tokens)),
            "time/sample_s": t_sample, "time/judge_s": t_judge, "time/update_s": t_update,
        })
        if scores is not None:
            row["oracle/sample_accuracy"] = float(scores.mean())
            row["oracle/informative_pairs"] = float(informative.mean())
            row["oracle/judge_agreement"] = (float(agree[informative].mean())
                                             if informative.any() else float("nan"))
            row["oracle/both_right"] = float(((scores == 1).all(1) & ~identical).mean())
            row["oracle/both_wrong"] = float(((scores == 0).all(1) & ~identical).mean())
        ctx.metrics.log(step + 1, row)
        progress.update({"loss": row["loss"], "acc": row.get("oracle/sample_accuracy", -1)})
        if ctx.checkpointer.should_save(step + 1) or step + 1 == total:
            ctx.checkpointer.save(step + 1, state, {"phase": "self_judge"})
            last_saved = step + 1
    progress.close()

    final = weights.final(state.trainable)
    summary = loop.summarize(ctx.metrics.path, "self_judge")
    loop.finish(ctx, final, total, summary)
    print(summary_line("self_judge", summary), flush=True)
    return summary


def _policy_params(state, frozen, use_lora):
    return frozen if use_lora else state.trainable


def _policy_lora(state, use_lora):
    return state.trainable if use_lora else None
