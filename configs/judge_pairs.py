"""A model's judge accuracy on the pairs of one preference JSONL file (TRL format), all
of them held out, beside the question-blind baselines on the same pairs: e.g. does a
judge fit the judgments it was trained on (`self_sample_pairs.jsonl` of a JSFT run with
`config.self_samples`)? docs/results.md, "A judge that checks answers".

    python -m sjjax.main --config=configs/judge_pairs.py:<pairs.jsonl>[,<preset>] \
        --config.model.source=<run dir> --config.run_dir=<out>    # -> <out>/eval.json

`evaluate.num_pairs` (default 1200) pairs are a seeded sample of the file's; no prompt
is answered (greedy, sampled and tournament off).
"""

from sjjax import presets
from sjjax.config import ConfigError


def get_config(arg: str = ""):
    path, _, preset = arg.partition(",")
    if not path:
        raise ConfigError("configs/judge_pairs.py: name the pairs, "
                          "--config=configs/judge_pairs.py:<pairs.jsonl>")
    c = presets.make("evaluate", preset or "tiny")
    c.data.sources = ({"format": "preference_jsonl", "path": path,
                       "heldout_fraction": 1.0},)
    c.evaluate.num_prompts = 0
    c.evaluate.num_pairs = 1200
    c.evaluate.samples_per_prompt = 0
    c.evaluate.shortcut_proof = False
    c.evaluate.tournament_sizes = ()
    c.evaluate.win_rate_references = ""
    c.run_dir = "runs/judge_pairs"
    return c
