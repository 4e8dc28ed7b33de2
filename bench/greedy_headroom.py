"""How much can on-policy DPO move a policy's greedy answers, whatever its judge?

DPO on pairs of the policy's own samples can change the greedy answer of a prompt only
where the policy sometimes samples the right answer while its greedy answer is wrong.
For a run directory (or preset model), on stratified synthetic prompts, this prints per
sampler setting: greedy and sampled oracle accuracy, pass@k, the share of prompts whose
greedy answer is wrong while one of the first 2 (one pair) or of all k samples is right
(the headroom of one pass), and the share of informative adjacent pairs (0,1), (2,3), ...

    python bench/greedy_headroom.py runs/tiny/jsft --prompts 192 --samples 8 \\
        --sampler 1.0,0.9 --sampler 1.3,1.0

(`--sampler T,top_p`; default: the preset's sampling settings; `--families membership
--levels 1 2 3`: other families' prompts than the preset's, e.g. whether a model trained
with `configs/jsft_own_errors.py:...,membership` answers the membership task). Writes
nothing.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def headroom(greedy_right, sample_right) -> dict:
    """greedy_right [P] in {0, 1}; sample_right [P, k] in {0, 1}, k even -> the shares."""
    import numpy as np
    g, s = np.asarray(greedy_right, float), np.asarray(sample_right, float)
    wrong = g == 0
    return {"greedy": g.mean(), "sampled": s.mean(), "pass@k": s.max(1).mean(),
            "greedy_wrong_right_in_2": np.mean(wrong & (s[:, :2].max(1) > 0)),
            "greedy_wrong_right_in_k": np.mean(wrong & (s.max(1) > 0)),
            "informative_pairs": np.mean(s[:, 0::2] != s[:, 1::2])}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("source", help="a run directory (or a preset model source)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--split", default="train", choices=("train", "heldout"))
    p.add_argument("--prompts", type=int, default=192)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--sampler", action="append", default=[], metavar="T,TOP_P")
    p.add_argument("--families", nargs="*", default=[], help="the suite's families to ask "
                   "(default: the preset's)")
    p.add_argument("--levels", nargs="*", type=int, default=[1, 2])
    args = p.parse_args(argv)
    import jax
    import numpy as np
    from sjjax import presets
    from sjjax.data.sources import load_oracle, load_prompts
    from sjjax.evaluation import respond, stratified_prompts
    from sjjax.generation import Responder
    from sjjax.phases.common import load_policy
    from sjjax.sampling import SamplingParams
    c = presets.make("self_judge", args.preset)
    c.model.source = args.source
    if args.families:
        c.data.sources = (presets.synthetic_source(
            dict(families=tuple(args.families), levels=tuple(args.levels)), n_sft=0,
            n_pairs=0, n_prompts=max(256, args.prompts), wrong_fraction=0.0),)
    policy = load_policy(c)
    responder = Responder.from_config(policy, c.sampling)
    oracle = load_oracle(c)
    prompts = stratified_prompts(load_prompts(c, split=args.split), args.prompts, 0)
    w = (policy.params, policy.lora)
    greedy = respond(responder, *w, prompts, jax.random.key(1), SamplingParams(greedy=True))
    g = [oracle(q.meta, t[0]) for q, t in zip(prompts, greedy.texts)]
    samplers = [tuple(map(float, s.split(","))) for s in args.sampler] or [
        (c.sampling.temperature, c.sampling.top_p)]
    print(f"{args.source}: {len(prompts)} {args.split} prompts, {args.samples} samples each")
    for temperature, top_p in samplers:
        out = respond(responder, *w, prompts, jax.random.key(2),
                      SamplingParams(temperature=temperature, top_p=top_p), args.samples)
        s = np.array([[oracle(q.meta, t) for t in ts] for q, ts in zip(prompts, out.texts)])
        h = headroom(g, s)
        print(f"T={temperature} top_p={top_p}: " + ", ".join(f"{k} {v:.3f}" for k, v in h.items()),
              flush=True)


if __name__ == "__main__":
    main()
