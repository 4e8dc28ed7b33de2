"""JSFT example construction on the real HH-RLHF harmless-base test split (2312 pairs):
examples/s of reading + templating + tokenizing (SFT + judgments in both orders, with
loss masks), and the share of examples longer than 512 and 2048 tokens.

Peer, same run, same machine: the straightforward transformers way to get the same
token sequences without loss masks: `apply_chat_template(tokenize=True)` per SFT
conversation and per judge prompt (the judge template filled in as plain text).

    python bench/bench_data.py [--data ../shared/data/hh-rlhf/harmless-base-test.jsonl.gz]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from bench.common import smollm2_path, timeit  # noqa: E402
from sjjax.config import base_config  # noqa: E402
from sjjax.data import examples, readers  # noqa: E402
from sjjax.data.templates import ChatEncoder, JudgePromptBuilder  # noqa: E402
from sjjax.model.tokenizer import load_tokenizer  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "hh-rlhf",
                            "harmless-base-test.jsonl.gz")


def peer_examples(tokenizer, records, template) -> int:
    """transformers: one apply_chat_template(tokenize=True) per example, no masks."""
    n = 0
    for conversation in records.conversations:
        tokenizer.apply_chat_template(list(conversation.messages), tokenize=True)
        n += 1
    for j in records.judgments:
        for first, second, letter in ((j.chosen, j.rejected, " A"), (j.rejected, j.chosen, " B")):
            user = template["user"].format(context=j.context, response_a=first,
                                           response_b=second)
            tokenizer.apply_chat_template(
                [{"role": "user", "content": user},
                 {"role": "assistant", "content": template["assistant_prefix"] + letter}],
                tokenize=True)
            n += 1
    return n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    t = time.perf_counter()
    tokenizer = load_tokenizer(smollm2_path())
    load_s = time.perf_counter() - t
    judge_config = base_config("jsft").judge
    chat = ChatEncoder(tokenizer)
    judge = JudgePromptBuilder.from_config(tokenizer, judge_config)

    def ours(max_length=None):
        records = readers.read_hh_rlhf(args.data, on_bad_record="skip")
        built, stats = examples.build_jsft_examples(records.conversations, records.judgments,
                                                    chat, judge, max_length)
        return records, built, stats

    records, built, _ = ours()
    n_examples = len(built)
    read_s = timeit(lambda: readers.read_hh_rlhf(args.data, on_bad_record="skip"),
                    repeats=args.repeats)
    template = judge_config.templates["helpfulness"].to_dict()
    n_peer = peer_examples(tokenizer, records, template)
    # interleaved, so that load from other processes hits both alike; medians
    ours_times, peer_times = [], []
    for _ in range(args.repeats):
        ours_times.append(timeit(ours, warmup=0, repeats=1))
        peer_times.append(timeit(lambda: peer_examples(tokenizer, records, template),
                                 warmup=0, repeats=1))
    ours_s, peer_s = statistics.median(ours_times), statistics.median(peer_times)

    lengths = {k: np.asarray([len(e) for e in built if e.kind == k]) for k in ("sft", "judge")}
    all_lengths = np.concatenate(list(lengths.values()))
    result = dict(
        data=os.path.relpath(args.data, ROOT), lines=records.stats[0].records,
        pairs_kept=len(records.judgments), skipped=dict(records.stats[0].skipped),
        examples=n_examples, tokenizer_load_s=round(load_s, 2), read_s=round(read_s, 3),
        construction_s=round(ours_s, 3), examples_per_s=round(n_examples / ours_s, 1),
        peer_examples_per_s=round(n_peer / peer_s, 1),
        ratio_vs_peer=round((n_examples / ours_s) / (n_peer / peer_s), 2),
        tokens_per_example_mean=round(float(all_lengths.mean()), 1),
        tokens_per_example_p50_p99_max=[int(np.percentile(all_lengths, 50)),
                                        int(np.percentile(all_lengths, 99)),
                                        int(all_lengths.max())],
    )
    for max_length in (512, 2048):
        over = {k: round(float((v > max_length).mean()), 4) for k, v in lengths.items()}
        over["all"] = round(float((all_lengths > max_length).mean()), 4)
        _, kept, stats = ours(max_length)
        result[f"over_{max_length}"] = dict(
            share_longer=over, truncated=dict(stats.truncated), dropped=dict(stats.dropped),
            kept=len(kept))
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
