"""Chat with a model through its chat template (`configs/generate.py`).

    python -m sjjax.main --config=configs/generate.py
    python -m sjjax.main --config=configs/generate.py --config.generate.interactive=True
"""

from __future__ import annotations

import sys

import jax
import numpy as np

from sjjax.config import ConfigError
from sjjax.data.templates import ChatEncoder
from sjjax.phases.common import load_policy, sampling_params
from sjjax.sampling import Sampler, decode_response, left_pad


def validate(config) -> None:
    if "generate" not in config:
        raise ConfigError("config.generate: missing (prompts, interactive, system)")
    if not config.generate.interactive and not config.generate.prompts:
        raise ConfigError("config.generate.prompts: empty and interactive=False: nothing to do")


def run(config):
    policy = load_policy(config)
    tok = policy.tokenizer
    encoder = ChatEncoder(tok)
    sampler = Sampler(policy.graphdef, policy.model_config,
                      max_new_tokens=config.sampling.max_new_tokens,
                      eos_ids=policy.eos_ids, pad_id=tok.pad_token_id)
    params = sampling_params(config.sampling)
    key = jax.random.key(config.seed)
    system = [{"role": "system", "content": config.generate.system}] if config.generate.system else []

    def reply(conversations):
        nonlocal key
        tokens, mask = left_pad([encoder.encode_prompt(c) for c in conversations],
                                 tok.pad_token_id, config.sampling.prompt_bucket)
        key, sub = jax.random.split(key)
        out = sampler(policy.params, policy.lora, tokens, mask, sub, params)
        texts = []
        for row in range(len(conversations)):
            ids = np.asarray(out.tokens[row, :int(out.lengths[row])])
            texts.append(decode_response(tok, ids, policy.eos_ids))
        return texts

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
