"""The suite's command line: writes the suite into a directory.

    python -m sjjax.data.synthetic --out DIR --seed 0 [--n-sft 200 --n-pairs 200
        --n-heldout 32 --wrong-fraction 0.2 --families compare,sort --levels 1,2]

writes DIR/sft.jsonl ({"messages", "source"}), DIR/pairs.jsonl (TRL style
{"prompt", "chosen", "rejected"} message lists: what your own preference data
should look like) and DIR/prompts.jsonl ({"messages", "context", "meta", "source"}).
"""

from __future__ import annotations

import argparse
import os
import sys

from sjjax.data.synthetic.files import write_suite
from sjjax.data.synthetic.tasks import FAMILIES


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sjjax.data.synthetic",
                                     description="Write the synthetic task suite.")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-sft", type=int, default=200, help="SFT tasks per family/level")
    parser.add_argument("--n-pairs", type=int, default=200, help="pairs per family/level")
    parser.add_argument("--n-heldout", type=int, default=32,
                        help="held-out prompts per family/level")
    parser.add_argument("--wrong-fraction", type=float, default=0.2,
                        help="fraction of SFT demonstrations with a wrong answer")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--levels", default="1,2,3")
    args = parser.parse_args(argv)
    written = write_suite(args.out, args.seed, args.n_sft, args.n_pairs, args.n_heldout,
                          args.wrong_fraction, [f for f in args.families.split(",") if f],
                          [int(x) for x in args.levels.split(",") if x])
    for name, n in written.items():
        print(f"{os.path.join(args.out, name)}: {n} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
