"""How hard is the synthetic suite for a real model? Greedy accuracy of
SmolLM2-135M-Instruct (sjjax's compiled sampler) per family and level, scored by
the suite's oracle, on held-out prompts.

    python bench/synthetic_difficulty.py [--n 32] [--families compare,sort]
        [--levels 1,2,3] [--max-new-tokens 48] [--batch 16] [--dump out.jsonl]

Prints a table: accuracy, and the share of responses from which the oracle reads
no answer at all ("none"). --dump writes every prompt, response and score.
Not a unit test: about 3 minutes (--n 32) or 5 minutes (--n 48) on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from sjjax import assets  # noqa: E402
from sjjax.data import synthetic  # noqa: E402
from sjjax.data.templates import ChatEncoder  # noqa: E402
from sjjax.model.loading import build_model, load_pretrained  # noqa: E402
from sjjax.model.transformer import split_params  # noqa: E402
from sjjax.sampling import Sampler, SamplingParams, left_pad  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="held-out prompts per family/level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", default=",".join(synthetic.FAMILIES))
    parser.add_argument("--levels", default="1,2,3")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--model", default=None, help="GGUF file or HF dir (default: SmolLM2)")
    parser.add_argument("--dump", default=None, help="write prompts/responses/scores here")
    args = parser.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    levels = [int(x) for x in args.levels.split(",") if x]

    t0 = time.time()
    cfg, params, tok = load_pretrained(args.model or assets.smollm2_path())
    graphdef, p, _ = split_params(build_model(cfg, params))
    encoder = ChatEncoder(tok)
    sampler = Sampler(graphdef, cfg, max_new_tokens=args.max_new_tokens,
                      eos_ids=[tok.eos_token_id], pad_id=tok.pad_token_id)
    print(f"loaded in {time.time() - t0:.1f} s; backend {jax.default_backend()}", flush=True)

    dump = open(args.dump, "w") if args.dump else None
    table = {}
    t0 = time.time()
    for family in families:
        for level in levels:
            tasks = synthetic.generate(args.seed, args.n, "heldout", [family], [level],
                                       stream="eval")
            scores, nones = [], 0
            for start in range(0, len(tasks), args.batch):
                chunk = tasks[start:start + args.batch]
                rows = [encoder.encode_prompt(list(t.messages)) for t in chunk]
                rows += [rows[-1]] * (args.batch - len(rows))  # fixed batch: one compile
                tokens, mask = left_pad(rows, tok.pad_token_id, 64)
                out = sampler(p, None, tokens, mask, jax.random.key(0),
                              SamplingParams(greedy=True))
                lengths, out_tokens = np.asarray(out.lengths), np.asarray(out.tokens)
                for i, task in enumerate(chunk):
                    text = tok.decode(out_tokens[i, :lengths[i]], skip_special_tokens=True)
                    s = synthetic.score(task.meta, text)
                    none = synthetic.extract_answer(task.meta, text) is None
                    scores.append(s)
                    nones += none
                    if dump:
                        dump.write(json.dumps(dict(family=family, level=level,
                                                   prompt=task.question, answer=task.answer,
                                                   response=text, score=s, none=none)) + "\n")
            table[family, level] = (float(np.mean(scores)), nones / len(tasks), len(tasks))
            acc, none_rate, n = table[family, level]
            print(f"{family:11s} L{level}: accuracy {acc:.2f}  no answer {none_rate:.2f}  "
                  f"(n={n}, {time.time() - t0:.0f} s)", flush=True)
    if dump:
        dump.close()

    print("\n| family | " + " | ".join(f"L{lv} acc (none)" for lv in levels) + " |")
    print("| --- |" + " --- |" * len(levels))
    for family in families:
        cells = [f"{table[family, lv][0]:.2f} ({table[family, lv][1]:.2f})" for lv in levels]
        print(f"| {family} | " + " | ".join(cells) + " |")
    n_total = sum(v[2] for v in table.values())
    mean = sum(v[0] * v[2] for v in table.values()) / n_total
    print(f"\noverall accuracy {mean:.3f} on {n_total} prompts "
          f"(greedy, max_new_tokens={args.max_new_tokens}, {time.time() - t0:.0f} s)")
    return table


if __name__ == "__main__":
    main()
