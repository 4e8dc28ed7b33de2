"""Chat with a model through its chat template (`configs/generate.py`).

    python -m sjjax.main --config=configs/generate.py
    python -m sjjax.main --config=configs/generate.py --config.generate.interactive=True
"""

from __future__ import annotations

import sys

import jax

from sjjax.config import ConfigError
from sjjax.generation import Responder
from sjjax.phases.common import load_policy, sampling_params


def validate(config) -> None:
    if "generate" not in config:
        raise ConfigError("config.generate: missing (prompts, interactive, system)")
    if not config.generate.interactive and not config.generate.prompts:
        raise ConfigError("config.generate.prompts: empty and interactive=False: nothing to do")


def run(config):
    policy = load_policy(config)
    # One batch per call (the prompts, or the conversation so far), on a fresh key.
    responder = Responder.from_config(policy, config.sampling, batched=False)
    params = sampling_params(config.sampling)
    key = jax.random.key(config.seed)
    system = [{"role": "system", "content": config.generate.system}] if config.generate.system else []

    def reply(conversations):
        nonlocal key
        key, sub = jax.random.split(key)
        out = responder.reply(policy.params, policy.lora, conversations, sub, params)
        return [texts[0] for texts in out.texts]

    results = []
    if config.generate.prompts:
        conversations = [system + [{"role": "user", "content": p}] for p in config.generate.prompts]
        for prompt, text in zip(config.generate.prompts, reply(conversations)):
            print(f">>> {prompt}\n{text}\n", flush=True)
            results.append((prompt, text))
    if config.generate.interactive:
        history = list(system)
        print("Chat with the model; an empty line quits.", flush=True)
        for line in sys.stdin:
            line = line.strip()
            if not line:
                break
            history.append({"role": "user", "content": line})
            text = reply([history])[0]
            history.append({"role": "assistant", "content": text})
            print(text, flush=True)
    return results
