"""Judged pairs/s: sjjax's judge vs the reference implementation's approach, SmolLM2-135M,
float32, 8 HH-RLHF pairs judged in both orders (judge prompts of about 236 tokens).

The peer, as the paper's code does it: transformers `generate(max_new_tokens=1,
output_scores=True)` on each order's prompts (batches of 8 prompts), softmax over the
two judge tokens. sjjax: one jitted forward per batch that computes the prefix both
orders share once (KV cache) and only the last position's logits. Both must give the
same probabilities (checked here to 1e-4).

    python bench/bench_judge.py [--pairs 8 --repeats 5 --attention auto]

Prints the ratio and each side's share of the FLOP bound (matmul FLOPs of the tokens
it had to process / peak matmul FLOP/s measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.common import (forward_flops_per_token, hardware_bounds, load_torch_smollm2,  # noqa
                          match_precision, set_threads, smollm2_path, timeit_interleaved,
                          torch_device)
from sjjax.data.templates import (JudgePromptBuilder, default_judge_templates,  # noqa: E402
                                  validate_judge_templates)
from sjjax.judge import Judge  # noqa: E402
from sjjax.model.attention import IMPLEMENTATIONS as ATTENTION_IMPLEMENTATIONS  # noqa: E402
from sjjax.model.loading import build_model, load_pretrained  # noqa: E402
from sjjax.model.transformer import split_params  # noqa: E402
from sjjax.sampling import left_pad  # noqa: E402

HH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                  "data", "hh-rlhf", "harmless-base-test.jsonl.gz")


def select_pairs(builder, n: int, lo: int = 200, hi: int = 272):
    """n HH-RLHF pairs whose judge prompts are lo..hi tokens (about 236 on average)."""
    from sjjax.data.readers import read_hh_rlhf
    out = []
    for j in read_hh_rlhf(HH, on_bad_record="skip").judgments:
        length = len(builder.prompt("helpfulness", j.context, j.chosen, j.rejected).ids)
        if lo <= length <= hi:
            out.append((j.context, j.chosen, j.rejected))
        if len(out) == n:
            return out
    raise RuntimeError(f"only {len(out)} HH-RLHF pairs with prompts of {lo}-{hi} tokens")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--attention", default="auto", choices=ATTENTION_IMPLEMENTATIONS,
                        help="model.attention (float32 here: auto resolves to xla)")
    parser.add_argument("--json")
    args = parser.parse_args()
    set_threads()
    match_precision("float32")
    print(f"attention {args.attention}")
    cfg, params, tok = load_pretrained(smollm2_path(), attention=args.attention)
    builder = JudgePromptBuilder(tok, validate_judge_templates(default_judge_templates(),
                                                               ["helpfulness"]))
    pairs = select_pairs(builder, args.pairs)
    graphdef, p, _ = split_params(build_model(cfg, params))
    judge = Judge(graphdef, builder, batch_size=args.pairs, pad_id=tok.pad_token_id)
    ours = judge(p, None, pairs).order_probs[:, 0, :]
    batch, _ = judge.build_batch(pairs)
    prefix_tokens = int(batch.prefix_mask.sum())
    suffix_tokens = int(batch.suffix_mask.sum())
    del params

    import torch
    model = load_torch_smollm2()
    a_id, b_id = builder.token_ids
    prompts = [[builder.prompt("helpfulness", c, x, y).ids for c, x, y in pairs],
               [builder.prompt("helpfulness", c, y, x).ids for c, x, y in pairs]]
    total_tokens = sum(len(r) for order in prompts for r in order)

    def peer():
        probs = np.zeros((len(pairs), 2))
        for order, rows in enumerate(prompts):
            for start in range(0, len(rows), 8):
                chunk = rows[start:start + 8]
                ids, am = left_pad(chunk, tok.pad_token_id, multiple=1)
                ids = torch.tensor(ids, dtype=torch.long, device=torch_device())
                am = torch.tensor(am, dtype=torch.long, device=torch_device())
                with torch.no_grad():
                    out = model.generate(input_ids=ids, attention_mask=am, max_new_tokens=1,
                                         do_sample=False, output_scores=True,
                                         return_dict_in_generate=True,
                                         pad_token_id=tok.pad_token_id)
                two = out.scores[0][:, [a_id, b_id]].float()
                probs[start:start + len(chunk), order] = torch.softmax(two, -1)[:, 0].cpu()
        return probs  # filled through .cpu(), which waits for the card

    # The two sides take turns in every repeat (this machine's speed drifts over minutes).
    medians = timeit_interleaved({"sjjax": lambda: judge(p, None, pairs), "peer": peer},
                                 repeats=args.repeats)
    ours_s, peer_s = medians["sjjax"], medians["peer"]
    err = np.abs(peer() - ours).max()
    bounds = hardware_bounds()
    avg_len = total_tokens / (2 * len(pairs))
    flops_tok = forward_flops_per_token(cfg, avg_len / 2)
    ours_work = (prefix_tokens + suffix_tokens) * flops_tok
    peer_work = total_tokens * flops_tok
    ours_rate, peer_rate = len(pairs) / ours_s, len(pairs) / peer_s
    print(f"SmolLM2-135M float32 judging, {len(pairs)} HH-RLHF pairs x 2 orders, prompts of "
          f"{avg_len:.0f} tokens on average; {bounds['hardware']}, matmul peak "
          f"{bounds['flops_per_s'] / 1e9:.0f} GFLOP/s; max |P(A)| difference {err:.1e}")
    print(f"sjjax {ours_rate:6.2f} pairs/s ({prefix_tokens + suffix_tokens} tokens computed, "
          f"{ours_work / ours_s / bounds['flops_per_s']:.0%} of the FLOP bound) | "
          f"generate(max_new_tokens=1) {peer_rate:6.2f} pairs/s ({total_tokens} tokens, "
          f"{peer_work / peer_s / bounds['flops_per_s']:.0%}) | ratio {ours_rate / peer_rate:.2f}x")
    assert err < 1e-4, f"the two judges disagree: {err}"
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(sjjax_pairs_s=ours_rate, peer_pairs_s=peer_rate,
                           ratio=ours_rate / peer_rate, max_prob_diff=float(err),
                           tokens_sjjax=prefix_tokens + suffix_tokens,
                           tokens_peer=total_tokens, **bounds), f, indent=2)


if __name__ == "__main__":
    main()
