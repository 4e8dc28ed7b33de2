"""JSFT of the tiny model with judge data that a question-blind rule cannot solve: the
preset's labelled pairs, plus pairs whose wrong answers defeat every question-blind rule
(`pairs: shortcut_proof`), plus the oracle-labelled pairs of a trained model's own
samples (`config.self_samples`: the policy's real kinds of error). docs/results.md,
"A judge that checks answers".

    python -m sjjax.main --config=configs/jsft_own_errors.py[:<run dir to sample>]

The argument (default runs/tiny/jsft) names the model whose samples become judge data;
"none" leaves them out (the shortcut-proof pairs alone).
"""

from sjjax import presets
from sjjax.presets import tiny


def get_config(sample_from: str = "runs/tiny/jsft"):
    c = presets.make("jsft", "tiny")
    proof = presets.synthetic_source(tiny.TASKS, n_sft=0, n_pairs=1000, n_prompts=0,
                                     wrong_fraction=0.0, seed=1)
    c.data.sources = tuple(c.data.sources) + ({**proof, "pairs": "shortcut_proof"},)
    name = "proof"
    if sample_from != "none":
        c.self_samples.enabled = True
        c.self_samples.model = sample_from
        name = "proof_own"
    c.run_dir = f"runs/tiny/recipes/jsft_{name}"
    return c
