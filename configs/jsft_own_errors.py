"""JSFT of the tiny model with judge data that a question-blind rule cannot solve: the
preset's labelled pairs, plus pairs whose wrong answers defeat every question-blind rule
(`pairs: shortcut_proof`), plus the oracle-labelled pairs of a trained model's own
samples (`config.self_samples`: the policy's real kinds of error). docs/results.md,
"A judge that checks answers".

    python -m sjjax.main --config=configs/jsft_own_errors.py[:<run dir to sample>[,<option>...]]

The argument (default runs/tiny/jsft) names the model whose samples become judge data;
"none" leaves them out (the shortcut-proof pairs alone). Options:
- no_labelled: drops the preset's labelled pairs, whose wrong answers "the larger number
  wins" always defeats: the judge then learns only from pairs no question-blind rule solves;
- rationales: every pair's target continues after the decision token with each
  response's check against the question ("A: 83 is not in the question.", JM-PR;
  `sjjax.data.synthetic.rationales`);
- check: the same checks written *before* the decision, each first copying the
  question's numbers (the tiny_check preset: a judge that checks, then decides;
  evaluate and self-judge it with that preset);
- no_restate: with check, the checks do not copy the question's numbers (the first
  check recipe of docs/results.md);
- membership: adds 12,000 SFT conversations of the suite's `membership` family ("Is 83
  in the list 58, 23, 61, 85, 42?"; levels 1-3, absent queries near misses of a listed
  number from level 2): the step a check must compute ("83 is not in the question.")
  taught as a task of its own. SFT only: the prompts the policy answers are unchanged.
"""

from sjjax import presets
from sjjax.data.templates import COMPACT_JUDGE_TEMPLATE_RATIONALE
from sjjax.presets import tiny

OPTIONS = ("no_labelled", "rationales", "check", "no_restate", "membership")
MEMBERSHIP = dict(families=("membership",), levels=(1, 2, 3))


def get_config(arg: str = "runs/tiny/jsft"):
    sample_from, *options = arg.split(",")
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        raise ValueError(f"configs/jsft_own_errors.py:{arg}: unknown option(s) {unknown} "
                         f"(expected some of {OPTIONS})")
    rationales = "rationales" in options
    if rationales and "check" in options:
        raise ValueError(f"configs/jsft_own_errors.py:{arg}: rationales (after the decision) "
                         f"or check (before it), not both")
    c = presets.make("jsft", "tiny_check" if "check" in options else "tiny")
    if "no_labelled" in options:
        c.data.sources = tuple({**s, "n_pairs": 0} for s in c.data.sources)
    proof = presets.synthetic_source(tiny.TASKS, n_sft=0, n_pairs=1000, n_prompts=0,
                                     wrong_fraction=0.0, seed=1)
    proof = {**proof, "pairs": "shortcut_proof"}
    c.data.sources = tuple(c.data.sources) + (
        {**proof, "rationales": True, "restate": True} if "check" in options else proof,)
    if "membership" in options:
        c.data.sources = tuple(c.data.sources) + (presets.synthetic_source(
            MEMBERSHIP, n_sft=4000, n_pairs=0, n_prompts=0, wrong_fraction=0.0, seed=2),)
    if "no_restate" in options:
        c.data.sources = tuple({**s, "restate": False} for s in c.data.sources)
        c.self_samples.restate = False
    if rationales:
        c.data.sources = tuple({**s, "rationales": True} for s in c.data.sources)
        c.judge.templates = COMPACT_JUDGE_TEMPLATE_RATIONALE
        c.self_samples.rationales = True
        # The rationales add up to ~30 target tokens: at the preset's 160, 11% of the
        # judgments would lose part of their question (measured: 3,208 of 29,292).
        c.data.max_length = 256
        c.data.buckets = (64, 96, 128, 160, 192, 256)
    name = "proof"
    if sample_from != "none":
        c.self_samples.enabled = True
        c.self_samples.model = sample_from
        name = "proof_own"
    c.run_dir = f"runs/tiny/recipes/jsft_{name}{''.join('_' + o for o in options)}"
    return c
