"""JSFT of the tiny model with judge data that a question-blind rule cannot solve: the
preset's labelled pairs, plus pairs whose wrong answers defeat every question-blind rule
(`pairs: shortcut_proof`), plus the oracle-labelled pairs of a trained model's own
samples (`config.self_samples`: the policy's real kinds of error). docs/results.md,
"A judge that checks answers".

    python -m sjjax.main --config=configs/jsft_own_errors.py[:<run dir to sample>[,no_labelled]]

The argument (default runs/tiny/jsft) names the model whose samples become judge data;
"none" leaves them out (the shortcut-proof pairs alone). ",no_labelled" drops the
preset's labelled pairs, whose wrong answers "the larger number wins" always defeats:
the judge then learns only from pairs that no question-blind rule solves.
"""

from sjjax import presets
from sjjax.presets import tiny


def get_config(arg: str = "runs/tiny/jsft"):
    sample_from, _, option = arg.partition(",")
    if option not in ("", "no_labelled"):
        raise ValueError(f"configs/jsft_own_errors.py:{arg}: unknown option {option!r} "
                         f"(expected no_labelled)")
    c = presets.make("jsft", "tiny")
    if option:
        c.data.sources = tuple({**s, "n_pairs": 0} for s in c.data.sources)
    proof = presets.synthetic_source(tiny.TASKS, n_sft=0, n_pairs=1000, n_prompts=0,
                                     wrong_fraction=0.0, seed=1)
    c.data.sources = tuple(c.data.sources) + ({**proof, "pairs": "shortcut_proof"},)
    name = "proof"
    if sample_from != "none":
        c.self_samples.enabled = True
        c.self_samples.model = sample_from
        name = "proof_own"
    c.run_dir = f"runs/tiny/recipes/jsft_{name}{'_' + option if option else ''}"
    return c
