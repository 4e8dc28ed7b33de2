"""Judge data from a model's own samples (beyond the paper; off in the paper presets).

A judge trained only on hand-made negatives may not recognise the policy's real
mistakes (measured on the tiny preset: 0.97 accuracy on held-out labelled pairs, but
below chance on the informative pairs of the policy's own samples, whose wrong answers
were numbers absent from the question). With `config.self_samples.enabled`, JSFT first
samples the model named by `config.self_samples.model` (e.g. the SFT baseline's run
dir) on training prompts, labels the samples with the oracle (synthetic suite), and
adds to the judgment data every distinct wrong sample paired with a correct sample of
the same prompt, in both orders like any other pair. The pairs are written to run_dir/self_sample_pairs.jsonl (TRL-style
preference JSONL) once, so a resumed run reuses them.
"""

from __future__ import annotations

import json
import logging
import os

import jax
import ml_collections

from sjjax.data import synthetic
from sjjax.data.sources import load_oracle, load_prompts
from sjjax.errors import ConfigError
from sjjax.generation import Responder
from sjjax.phases.common import load_policy
from sjjax.sampling import SamplingParams

log = logging.getLogger("sjjax")


def add_self_sample_pairs(config) -> dict | None:
    """Samples, labels and registers the pairs as a data source; -> counts or None."""
    ss = config.get("self_samples")
    if ss is None or not ss.enabled:
        return None
    if load_oracle(config) is None:
        raise ConfigError("config.self_samples.enabled needs prompts with an oracle (the "
                          "synthetic suite)")
    if not ss.model:
        raise ConfigError("config.self_samples.model: the run dir of the model to sample")
    path = os.path.join(config.run_dir, "self_sample_pairs.jsonl")
    counts_path = path + ".counts.json"
    if not os.path.exists(counts_path):
        counts = _sample_and_label(config, ss, path)
        with open(counts_path, "w") as f:
            json.dump(counts, f)
    with open(counts_path) as f:
        counts = json.load(f)
    config.data.sources = tuple(config.data.sources) + (
        {"format": "preference_jsonl", "path": path},)
    log.info("self-sample judge pairs: %s", counts)
    return counts


def label_samples(prompts, texts, oracle, explain=None) -> tuple[list[dict], dict]:
    """Every distinct wrong sample of a prompt, paired with a correct sample of the same
    prompt (cycling through the distinct correct ones) -> preference rows + counts.
    explain(meta, response) -> str, if given, writes each pair's rationales (JM-PR).

    Empty samples (the policy stopped at once) are counted but not paired: the
    preference readers reject empty responses as malformed data."""
    rows, counts = [], dict(prompts=len(prompts), samples=0, distinct=0, correct=0,
                            empty=0, prompts_without_correct=0, prompts_without_wrong=0,
                            pairs=0)
    for prompt, samples in zip(prompts, texts):
        counts["empty"] += sum(not t.strip() for t in samples)
        distinct = list(dict.fromkeys(t.strip() for t in samples if t.strip()))
        right = [t for t in distinct if oracle(prompt.meta, t)]
        wrong = [t for t in distinct if not oracle(prompt.meta, t)]
        counts["samples"] += len(samples)
        counts["distinct"] += len(distinct)
        counts["correct"] += sum(oracle(prompt.meta, t) for t in samples)
        counts["prompts_without_correct"] += not right
        counts["prompts_without_wrong"] += not wrong
        for i, bad in enumerate(wrong if right else []):
            good = right[i % len(right)]
            why = (explain(prompt.meta, good), explain(prompt.meta, bad)) if explain else None
            rows.append(synthetic.preference_row(prompt.messages, good, bad, why))
    counts["pairs"] = len(rows)
    counts["sample_accuracy"] = counts["correct"] / max(counts["samples"], 1)
    return rows, counts


def _sample_and_label(config, ss, path: str) -> dict:
    os.makedirs(config.run_dir, exist_ok=True)
    model_config = ml_collections.ConfigDict(config.to_dict())
    model_config.model.source = ss.model
    policy = load_policy(model_config)
    prompts = load_prompts(config, "train")[:ss.num_prompts]
    responder = Responder.from_config(policy, config.sampling)
    out = responder.reply(policy.params, policy.lora, [p.messages for p in prompts],
                          jax.random.key(config.seed + 17),
                          SamplingParams(temperature=ss.temperature, top_p=ss.top_p),
                          ss.samples_per_prompt)
    explain = synthetic.explainer(ss.get("rationales", False), ss.get("restate", False))
    rows, counts = label_samples(prompts, out.texts, load_oracle(config), explain)
    synthetic.write_jsonl(path, rows)
    return counts
