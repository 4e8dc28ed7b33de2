"""On-policy self-training (`configs/self_judge.py`).

Policy pi is initialised from the Judge Model (JM); the reference pi_ref is the frozen
JM, which is also the judge. Each step:

  1. sample 2 responses per prompt from the *current* policy (compiled sampler;
     config.self_judge.samples_per_prompt = N: N responses, samples (0, 1), (2, 3), ...
     of a prompt are N / 2 pairs);
  2. judge each pair with pi_ref (one batched forward, both orders);
  3. take a DPO step on (chosen, rejected), chosen and rejected in one forward,
     reference log-probs without gradients.

Pairs whose two responses are identical carry no signal; they are counted and kept
out of the loss and of the batch statistics. On the synthetic suite the oracle
labels every pair too, giving the judge's agreement with the truth on the policy's
own samples and the oracle accuracy of those samples, and beside it each
question-blind rule's agreement on the same informative pairs
(`sjjax.evaluation.shortcuts`; the best of them is the bar the judge must clear).

Controls (config.self_judge.judge): `oracle` lets the task oracle pick chosen and
rejected (pairs both right or both wrong carry no preference and are kept out of the
loss, like identical pairs); `oracle_noisy` flips that verdict with probability
config.self_judge.oracle_flip, seeded per step (a resumed run flips the same pairs).
They show how good a judge must be before self-training helps.

With LoRA, the policy, the reference and the judge share one copy of the base
weights: the reference and the judge are the base with adapters off.
"""

from __future__ import annotations

import logging
import time

import jax
import numpy as np

from sjjax import sharding
from sjjax.config import ConfigError
from sjjax.data.sources import load_oracle, load_prompts
from sjjax.evaluation.shortcuts import RULES, agreement, rule_votes
from sjjax.generation import Responder
from sjjax.judge import Judge
from sjjax.losses import DPOType
from sjjax.phases.common import load_policy, sampling_params
from sjjax.sampling import bucket
from sjjax.train import trainer
from sjjax.train.memory import PeakMemory
from sjjax.train.steps import LossSpec, make_dpo_step
from sjjax.train.trainer import StepBatch

log = logging.getLogger("sjjax")


def validate(config) -> None:
    sj = config.self_judge
    n = sj.samples_per_prompt
    if not (isinstance(n, int) and n >= 2 and n % 2 == 0):
        raise ConfigError(f"config.self_judge.samples_per_prompt: {n!r} must be an even "
                          f"number >= 2 (samples 2m and 2m+1 of a prompt are a pair)")
    if sj.prompts_per_step * (n // 2) % config.train.grad_accum:
        raise ConfigError(f"config.self_judge.prompts_per_step={sj.prompts_per_step} x "
                          f"samples_per_prompt/2={n // 2} pairs is not a multiple of "
                          f"config.train.grad_accum={config.train.grad_accum}")
    if config.dpo.loss_type not in DPOType.__args__:
        raise ConfigError(f"config.dpo.loss_type: {config.dpo.loss_type!r} not in "
                          f"{DPOType.__args__}")
    if config.dpo.beta <= 0:
        raise ConfigError("config.dpo.beta: must be > 0")
    if sj.judge not in JUDGES:
        raise ConfigError(f"config.self_judge.judge: {sj.judge!r}; expected "
                          f"{'|'.join(JUDGES)}")
    if sj.judge in ORACLE_JUDGES and load_oracle(config) is None:
        raise ConfigError(f"config.self_judge.judge: {sj.judge!r} needs prompts with an "
                          f"oracle (the synthetic suite as config.data.sources / "
                          f"prompt_sources)")
    if not 0.0 <= float(sj.get("oracle_flip", 0.0)) <= 1.0:
        raise ConfigError(f"config.self_judge.oracle_flip: {sj.oracle_flip} must be in [0, 1]")


JUDGES = ("reference", "policy", "oracle", "oracle_noisy")
ORACLE_JUDGES = ("oracle", "oracle_noisy")


def oracle_labels(scores: np.ndarray, identical: np.ndarray, flip: float, seed: int,
                  step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The oracle judges (the controls): scores [n, 2] of the two samples ->
    (a_wins [n], valid [n], flipped [n]).

    A pair is valid (has a preference) when its responses differ and exactly one is
    right; a_wins says the first is the right one, flipped with probability `flip`
    (seeded by (seed, step): a resumed run flips the same pairs). Invalid pairs get
    a_wins True and stay out of the loss."""
    scores = np.asarray(scores, np.float64)
    valid = (scores[:, 0] != scores[:, 1]) & ~np.asarray(identical, bool)
    flipped = np.random.default_rng([seed, step, 0xF11]).random(len(scores)) < flip
    a_wins = np.where(valid, (scores[:, 0] > scores[:, 1]) ^ flipped, True)
    return a_wins, valid, flipped & valid


def shortcut_metrics(questions, texts_a, texts_b, scores, informative, a_wins) -> dict:
    """Each question-blind rule's agreement with the oracle on the informative pairs,
    the best of them, and the judge's agreement with that best rule."""
    sel = np.asarray(informative, bool)
    if not sel.any():  # the same keys every step
        return {**{f"oracle/shortcut_agreement/{name}": float("nan") for name in RULES},
                "oracle/shortcut_agreement_best": float("nan"),
                "oracle/judge_shortcut_agreement": float("nan")}
    pick = lambda xs: [x for x, s in zip(xs, sel) if s]  # noqa: E731
    votes = rule_votes(pick(texts_a), pick(texts_b), pick(questions))
    truth = scores[sel, 0] > scores[sel, 1]
    out = {f"oracle/shortcut_agreement/{name}": agreement(v, truth) for name, v in votes.items()}
    best = max(votes, key=lambda name: out[f"oracle/shortcut_agreement/{name}"])
    out["oracle/shortcut_agreement_best"] = out[f"oracle/shortcut_agreement/{best}"]
    out["oracle/judge_shortcut_agreement"] = agreement(votes[best], np.asarray(a_wins)[sel])
    return out


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


def preference_rows(valid, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """valid [n] -> (pair indices [m], their validity [m]): the valid pairs, then copies
    of the first pair marked invalid up to m = the next power of two >= their count,
    rounded up to a multiple of `multiple` (micro-batches x processes) and at most the
    same for n. With no valid pair, the first `multiple` pairs, all invalid."""
    valid = np.asarray(valid, bool)
    keep = np.flatnonzero(valid)
    n = len(valid)
    round_up = lambda x: -(-x // multiple) * multiple  # noqa: E731
    m = min(round_up(1 << max(len(keep) - 1, 0).bit_length()), round_up(n))
    pad = np.zeros(m - len(keep), np.int64)
    return (np.concatenate([keep, pad]).astype(np.int64),
            np.concatenate([np.ones(len(keep), bool), np.zeros(len(pad), bool)]))


def batch_devices(mesh, rules) -> int:
    """How many ways the mesh splits a batch (the devices of its "batch" axes)."""
    spec = sharding.named_sharding(mesh, ("batch",), sharding.normalize_rules(rules)).spec
    axes = spec[0] if spec and spec[0] is not None else ()
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    return int(np.prod([mesh.shape[a] for a in axes], dtype=np.int64))


def close_truncated(responses, eos_ids, eos_id: int) -> list:
    """Responses cut at max_new_tokens (not ending in an EOS id) with `eos_id` appended,
    as the official code appends the EOS token to every DPO response."""
    return [r if len(r) and r[-1] in eos_ids else np.append(r, eos_id).astype(r.dtype)
            for r in responses]


def pair_outcomes(samples, scores, a_wins):
    """Per pair: identical?, oracle-informative?, judge agrees with the oracle?"""
    identical = np.array([a == b for a, b in samples])
    if scores is None:
        return identical, None, None
    sa, sb = scores[:, 0], scores[:, 1]
    informative = (sa != sb) & ~identical
    agree = np.where(informative, a_wins == (sa > sb), False)
    return identical, informative, agree


def _question(prompt) -> str:
    return "\n".join(m["content"] for m in prompt.messages if m.get("role") == "user")


class SelfJudgeTask:
    """Batches made on-policy: sample 2 responses per prompt from the current policy,
    judge them with the frozen JM (or, as an ablation, the policy), build DPO rows."""
    name = "self_judge"
    needs_reference = True
    progress_keys = ("loss", "oracle/sample_accuracy")

    def __init__(self, config, policy):
        self.config, self.policy = config, policy
        self.prompts = load_prompts(config, split="train")
        self.oracle = load_oracle(config)
        self.sampling = sampling_params(config.sampling)

    def setup(self, weights) -> None:
        c = self.config
        self.weights = weights
        self.batch_devices = batch_devices(jax.tree.leaves(weights.base)[0].sharding.mesh,
                                           c.mesh.rules)
        # All the step's prompts in one sampler call (on the policy's graph, adapters on).
        self.responder = Responder.from_config(self.policy, c.sampling,
                                               graphdef=weights.graphdef, batched=False)
        self.prompt_ids = self.responder.encode([p.messages for p in self.prompts])
        # The judge runs on the policy's graph; the reference is that graph with adapters off.
        self.judge = Judge.from_config(weights.graphdef, self.policy, c.judge)

    def make_step(self, weights, optimizer, schedule):
        spec = LossSpec.from_config(self.config, weights.use_lora)
        return make_dpo_step(weights.graphdef, optimizer, spec, schedule)

    def step_args(self, weights) -> tuple:
        return (weights.frozen, weights.ref)

    def batch(self, step, state):
        c, tok, w = self.config, self.policy.tokenizer, self.weights
        sj = c.self_judge
        started = time.perf_counter()
        idx = prompts_for_step(len(self.prompts), sj.prompts_per_step, step, c.seed)
        key = jax.random.fold_in(jax.random.wrap_key_data(state.key), step)
        params, lora = w.policy(state.trainable)
        n = sj.samples_per_prompt
        out = self.responder.sample(params, lora, [self.prompt_ids[i] for i in idx], key,
                                    self.sampling, num_samples=n)
        idx = np.repeat(idx, n // 2)  # the prompt of each pair
        # flat rows 2k, 2k+1: the two samples of pair k
        responses = [r for samples in out.tokens for r in samples]
        if sj.get("eos_on_truncated", False):
            responses = close_truncated(responses, self.policy.eos_ids, tok.eos_token_id)
        texts = [t for pair in out.texts for t in pair]
        lengths = out.lengths.ravel()
        t_sample = time.perf_counter() - started

        samples = [(tuple(responses[2 * k]), tuple(responses[2 * k + 1]))
                   for k in range(len(idx))]
        scores = None
        if self.oracle is not None:
            scores = np.array([[self.oracle(self.prompts[i].meta, texts[2 * k + j])
                                for j in (0, 1)] for k, i in enumerate(idx)])
        pairs = [(self.prompts[i].context, texts[2 * k], texts[2 * k + 1])
                 for k, i in enumerate(idx)]
        judged = None
        identical = np.array([a == b for a, b in samples])
        distinct = np.flatnonzero(~identical)
        if sj.judge in ORACLE_JUDGES:  # the controls: the task oracle (maybe noisy)
            flip = float(sj.get("oracle_flip", 0.0)) if sj.judge == "oracle_noisy" else 0.0
            a_wins, valid, flipped = oracle_labels(scores, identical, flip, c.seed, step)
        else:
            # Identical pairs carry no preference: only the distinct ones are judged.
            distinct_pairs = [pairs[k] for k in distinct]
            if sj.judge == "reference":  # the frozen JM: base weights, adapters off
                judged = self.judge(w.base, lora, distinct_pairs, use_lora=False)
            else:  # ablation: the current policy judges its own samples
                judged = self.judge(params, lora, distinct_pairs)
            a_wins = np.ones(len(pairs), bool)
            a_wins[distinct] = judged.a_wins
            valid = ~identical
        t_judge = time.perf_counter() - started - t_sample

        identical, informative, agree = pair_outcomes(samples, scores, a_wins)
        chosen = [responses[2 * k + (0 if win else 1)] for k, win in enumerate(a_wins)]
        rejected = [responses[2 * k + (1 if win else 0)] for k, win in enumerate(a_wins)]
        # Only the pairs with a preference go into the DPO rows (the others would add
        # nothing to the loss); their count is padded to a few shapes (one compile each).
        keep, keep_valid = preference_rows(valid, c.train.grad_accum * self.batch_devices)
        rows = dpo_rows([self.prompt_ids[idx[k]] for k in keep], [chosen[k] for k in keep],
                        [rejected[k] for k in keep], keep_valid, tok.pad_token_id,
                        c.train.grad_accum, c.data.length_bucket)
        metrics = {
            "pairs/identical": float(identical.mean()),
            # over distinct pairs: identical responses are judged the same in both orders
            "judge/position_consistency": (
                float(judged.consistent.mean())
                if judged is not None and len(distinct) else float("nan")),
            "judge/ties": judged.ties if judged is not None else 0,
            "pairs/with_preference": float(valid.mean()),
            "response/length_mean": float(lengths.mean()),
            "response/eos_rate": float(np.mean(lengths < c.sampling.max_new_tokens)),
            "time/sample_s": t_sample, "time/judge_s": t_judge,
        }
        if scores is not None:
            metrics["oracle/sample_accuracy"] = float(scores.mean())
            metrics["oracle/informative_pairs"] = float(informative.mean())
            metrics["oracle/judge_agreement"] = (float(agree[informative].mean())
                                                 if informative.any() else float("nan"))
            metrics["oracle/both_right"] = float(((scores == 1).all(1) & ~identical).mean())
            metrics["oracle/both_wrong"] = float(((scores == 0).all(1) & ~identical).mean())
            questions = [_question(self.prompts[i]) for i in idx]
            metrics.update(shortcut_metrics(questions, texts[0::2], texts[1::2], scores,
                                            informative, a_wins))
            if sj.judge == "oracle_noisy":
                metrics["oracle/flipped"] = (float(flipped[valid].mean()) if valid.any()
                                             else float("nan"))
        # Every process made the same rows (same prompts, keys and weights): the global
        # batch, not a host's part of it (whole=True).
        # real tokens: the rows of valid pairs (chosen rows, then rejected rows)
        tokens = int(rows["mask"][np.concatenate([rows["valid"]] * 2, axis=-1)].sum())
        return StepBatch(rows if valid.any() else None, tokens=tokens, metrics=metrics,
                         whole=True)

    def data_state(self):
        return None  # the prompts of a step are a pure function of the step

    def restore_data_state(self, data) -> None:
        pass

    def summary(self) -> dict:
        return {}


def run(config):
    memory = PeakMemory()  # before any weights are loaded
    policy = load_policy(config)
    return trainer.train(config, policy, SelfJudgeTask(config, policy),
                         int(config.self_judge.steps), memory)
