"""Judge data from a model's own samples (beyond the paper; off in the paper presets).

A judge trained only on hand-made negatives may not recognise the policy's real
mistakes. With `config.self_samples.enabled`, JSFT first samples the model named by
`config.self_samples.model` (e.g. the SFT baseline's run dir) on training prompts,
labels each pair of samples with the oracle (synthetic suite), and adds the pairs
with exactly one correct response to the judgment data, in both orders like any
other pair. The pairs are written to run_dir/self_sample_pairs.jsonl (TRL-style
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
from sjjax.evaluation import Responder
from sjjax.phases.common import load_policy
from sjjax.sampling import SamplingParams

log = logging.getLogger("sjjax")


def default_self_samples_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        enabled=False, model="", num_prompts=512, samples_per_prompt=4,
        temperature=1.0, top_p=1.0))


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


def _sample_and_label(config, ss, path: str) -> dict:
    os.makedirs(config.run_dir, exist_ok=True)
    model_config = ml_collections.ConfigDict(config.to_dict())
    model_config.model.source = ss.model
    policy = load_policy(model_config)
    prompts = load_prompts(config, "train")[:ss.num_prompts]
    responder = Responder(policy, max_new_tokens=config.sampling.max_new_tokens,
                          batch_size=config.sampling.batch_size,
                          prompt_bucket=config.sampling.prompt_bucket)
    k = ss.samples_per_prompt
    texts, _ = responder.reply(prompts, jax.random.key(config.seed + 17),
                               SamplingParams(temperature=ss.temperature, top_p=ss.top_p), k)
    total = synthetic.SampleCounts()
    rows = []
    for j in range(0, k - 1, 2):  # disjoint pairs of samples: (0, 1), (2, 3), ...
        judgments, counts = synthetic.pairs_from_samples(
            prompts, [t[j] for t in texts], [t[j + 1] for t in texts])
        for field in ("identical", "both_correct", "both_wrong", "informative"):
            setattr(total, field, getattr(total, field) + getattr(counts, field))
        by_context = {p.context: p for p in prompts}
        rows += [synthetic.preference_row(by_context[jd.context].messages, jd.chosen,
                                          jd.rejected) for jd in judgments]
    synthetic.write_jsonl(path, rows)
    return dict(total.__dict__, pairs_written=len(rows),
                sample_accuracy=float(sum(synthetic.score(p.meta, x) for p, t in
                                          zip(prompts, texts) for x in t) / (len(prompts) * k)))
