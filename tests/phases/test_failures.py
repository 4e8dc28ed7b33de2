"""Failing loudly: a non-finite loss stops the run and keeps the last good checkpoint;
an invalid config fails before anything compiles, naming the key."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import pytest

from sjjax.config import ConfigError
from sjjax.phases import PHASES, phase_module, run_phase
from sjjax.train.trainer import NonFiniteLossError
from tests.phases.tiny_config import small


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    c = small("jsft", str(tmp_path), **{"train.steps": 30, "checkpoint.every_steps": 2,
                                        "train.learning_rate": 1e9, "train.max_grad_norm": 0.0,
                                        "train.warmup_steps": 4, "train.schedule": "constant",
                                        "log.every_steps": 1})
    with pytest.raises(NonFiniteLossError, match=r"(loss|grad_norm) is (nan|inf) at step \d+"
                                                 r".*last good"):
        run_phase(c)
    steps = sorted(int(s) for s in os.listdir(os.path.join(c.run_dir, "checkpoints"))
                   if s.isdigit())
    assert not os.path.exists(os.path.join(c.run_dir, "final", "meta.json"))
    # every checkpoint that exists precedes the failing step (nothing bad was saved)
    rows = [r for r in open(os.path.join(c.run_dir, "metrics.jsonl"))]
    assert steps and steps[-1] < len(rows) + 1


def test_nan_in_self_judge_stops_the_same_loop(tmp_path, monkeypatch):
    """Self-judge runs the same loop: a DPO loss that turns NaN at step 5 stops the run
    there, keeping checkpoint 4. (A learning rate of 1e9 does not do it reliably here:
    the exploded policy samples identical pairs, and those steps take no update.)"""
    from sjjax.phases import self_judge

    real = self_judge.make_dpo_step

    def nan_from_step_5(*args, **kwargs):
        step = real(*args, **kwargs)

        def poisoned(state, *rest):
            new_state, metrics = step(state, *rest)
            return new_state, dict(metrics, loss=jnp.where(state.step >= 4, jnp.nan,
                                                           metrics["loss"]))
        return poisoned

    monkeypatch.setattr(self_judge, "make_dpo_step", nan_from_step_5)
    c = small("self_judge", str(tmp_path), **{"self_judge.steps": 8, "model.source": "tiny",
                                              "checkpoint.every_steps": 2,
                                              "log.every_steps": 1})
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 5.*\(step 4\)"):
        run_phase(c)
    steps = sorted(int(s) for s in os.listdir(os.path.join(c.run_dir, "checkpoints"))
                   if s.isdigit())
    assert steps[-1] == 4
    assert not os.path.exists(os.path.join(c.run_dir, "final", "meta.json"))


@pytest.mark.parametrize("key,value,message", [
    ("lora.targets", ("q_proj", "qq_proj"), r"config\.lora\.targets"),
    ("judge.templates", {"helpfulness": {"user": "{context} {response_a}"}},
     r"config\.judge\.templates\.helpfulness\.user.*\{response_b\}"),
    ("dpo.loss_type", "squared", r"config\.dpo\.loss_type"),
    ("sampling.top_p", 1.5, r"config\.sampling\.top_p"),
    ("train.grad_accum", 3, r"config\.data\.batch_size=16 is not a multiple"),
    ("data.max_length", 4096, r"config\.data\.max_length"),
    ("model.dtype", "float8", r"config\.model\.dtype"),
    ("phase", "train_everything", r"config\.phase"),
])
def test_invalid_config_fails_before_compiling(tmp_path, monkeypatch, key, value, message):
    phase = "self_judge" if key == "dpo.loss_type" else "jsft"
    c = small(phase, str(tmp_path), **({} if key == "judge.templates" else {key: value}))
    if key == "judge.templates":
        c.judge.templates = value
    if key == "lora.targets":
        c.lora.enabled = True

    for name in PHASES:  # imported first: a module-level @jax.jit decorator compiles nothing
        phase_module(name)

    def no_compile(*args, **kwargs):
        raise AssertionError("jax.jit was called before the config was validated")

    monkeypatch.setattr(jax, "jit", no_compile)
    with pytest.raises(ConfigError, match=message):
        run_phase(c)
    assert not os.path.exists(c.run_dir)
