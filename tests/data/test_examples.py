"""Example construction against hand-built truth: the expected ids are the SmolLM2
tokenization of hand-written chat text (one string, not piece by piece), and the loss
positions come from tokenizing hand-written prefixes of it."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sjjax.data import examples, readers
from sjjax.data.records import Conversation, Judgment, Prompt
from sjjax.data.templates import _trim_longest

SYS = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
       "Face<|im_end|>\n")
JUDGE_USER = ("<|im_start|>user\nWhich response is better? Judge by helpfulness and "
              "correctness.\n\n[Conversation]\n")


def ids(tokenizer, text) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def spans(tokenizer, segments) -> tuple[list[int], np.ndarray]:
    """[(text, is_target)] -> (ids of the whole text, mask from prefix lengths)."""
    text, mask, prefix = "", [], 0
    for piece, target in segments:
        text += piece
        n = len(ids(tokenizer, text))
        mask += [target] * (n - prefix)
        prefix = n
    return ids(tokenizer, text), np.asarray(mask, bool)


def judge_text(context, first, second):
    return (SYS + JUDGE_USER + context + "\n\n[Response A]\n" + first + "\n\n[Response B]\n"
            + second + "\n\nAnswer with A or B.<|im_end|>\n<|im_start|>assistant\nAnswer:")


# --------------------------------------------------------------------------
# One real record, end to end
# --------------------------------------------------------------------------

def test_hh_record_end_to_end(shared_data, tokenizer, chat, judge):
    out = readers.read_hh_rlhf(str(shared_data / "hh-rlhf/harmless-base-test.jsonl.gz"),
                               on_bad_record="skip")
    # line 965: {"chosen": "\n\nHuman: Can shoot a plan\n\nAssistant: What?",
    #            "rejected": "\n\nHuman: Can shoot a plan\n\nAssistant: Can't shoot a plan.
    #             What are you trying to do?"}
    i = next(k for k, j in enumerate(out.judgments) if j.source.endswith(":965"))
    conversation, judgment = out.conversations[i], out.judgments[i]
    assert conversation.messages == ({"role": "user", "content": "Can shoot a plan"},
                                     {"role": "assistant", "content": "What?"})
    rejected = "Can't shoot a plan.  What are you trying to do?"
    assert (judgment.context, judgment.chosen, judgment.rejected) == (
        "User: Can shoot a plan", "What?", rejected)

    built, stats = examples.build_jsft_examples([conversation], [judgment], chat, judge, 2048)
    assert dict(stats.built) == {"sft": 1, "judge": 2}
    sft, ab, ba = built
    want, mask = spans(tokenizer, [(SYS + "<|im_start|>user\nCan shoot a plan<|im_end|>\n"
                                    "<|im_start|>assistant\n", False),
                                   ("What?<|im_end|>", True), ("\n", False)])
    assert sft.tokens.tolist() == want and sft.loss_mask.tolist() == mask.tolist()
    assert sft.tokens.dtype == np.int32 and sft.loss_mask.dtype == bool and sft.kind == "sft"
    assert np.flatnonzero(sft.loss_mask).tolist() == [34, 35, 36]  # "What", "?", <|im_end|>

    for example, first, second, letter in ((ab, "What?", rejected, " A"),
                                           (ba, rejected, "What?", " B")):
        want, mask = spans(tokenizer, [(judge_text("User: Can shoot a plan", first, second),
                                        False), (letter + "<|im_end|>", True)])
        assert example.tokens.tolist() == want and example.loss_mask.tolist() == mask.tolist()
        assert example.kind == "judge"
        assert example.tokens[-2:].tolist() == [ids(tokenizer, letter)[0],
                                                tokenizer.convert_tokens_to_ids("<|im_end|>")]
        assert np.flatnonzero(example.loss_mask).tolist() == [len(want) - 2, len(want) - 1]


# --------------------------------------------------------------------------
# Loss masks
# --------------------------------------------------------------------------

def test_multi_turn_conversation_masks_every_assistant_turn(tokenizer, chat):
    messages = ({"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "Hi there"},
                {"role": "assistant", "content": "Hello! How can I help?"},
                {"role": "user", "content": "What is 2+2?"},
                {"role": "assistant", "content": "It is 4."})
    example, truncated = examples.encode_sft(chat, Conversation(messages, "x:1"), None)
    want, mask = spans(tokenizer, [
        ("<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nHi there"
         "<|im_end|>\n<|im_start|>assistant\n", False),
        ("Hello! How can I help?<|im_end|>", True),
        ("\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", False),
        ("It is 4.<|im_end|>", True), ("\n", False)])
    assert not truncated
    assert example.tokens.tolist() == want
    assert example.loss_mask.tolist() == mask.tolist()
    assert tokenizer.decode(example.tokens[example.loss_mask]) == (
        "Hello! How can I help?<|im_end|>It is 4.<|im_end|>")


@pytest.mark.parametrize("with_rationale", [False, True])
def test_judgment_masks_both_orders(tokenizer, judge, with_rationale):
    judgment = Judgment("User: Name a fruit.", "An apple.", "A chair.", "helpfulness",
                        "names a fruit" if with_rationale else None,
                        "a chair is furniture" if with_rationale else None, source="f:3")
    built = examples.encode_judgment(judge, judgment, None)
    assert len(built) == 2
    orders = [("An apple.", "A chair.", " A", "names a fruit", "a chair is furniture"),
              ("A chair.", "An apple.", " B", "a chair is furniture", "names a fruit")]
    for (example, truncated), (first, second, letter, r_first, r_second) in zip(built, orders):
        target = letter
        if with_rationale:
            target += f"\nRationale for A: {r_first}\nRationale for B: {r_second}"
        want, mask = spans(tokenizer, [(judge_text("User: Name a fruit.", first, second),
                                        False), (target + "<|im_end|>", True)])
        assert not truncated
        assert example.tokens.tolist() == want
        assert example.loss_mask.tolist() == mask.tolist()
        assert example.source == f"f:3:{'AB' if letter == ' A' else 'BA'}"
    n_target = int(built[0][0].loss_mask.sum())
    assert n_target == (2 if not with_rationale else
                        1 + len(ids(tokenizer, "\nRationale for A: names a fruit\nRationale "
                                               "for B: a chair is furniture")) + 1)


def test_jsft_judge_prompt_equals_online_judge_prompt(judge):
    context, chosen, rejected = "User: Name a fruit.", "An apple.", "A chair."
    for chosen_first in (True, False):
        encoded, _ = judge.training_example("helpfulness", context, chosen, rejected,
                                            chosen_first, "r1", "r2")
        first, second = (chosen, rejected) if chosen_first else (rejected, chosen)
        online = judge.prompt("helpfulness", context, first, second)
        n_prompt = int(np.argmax(encoded.loss_mask))
        assert encoded.tokens[:n_prompt].tolist() == online.ids.tolist()
    # the two orders share the prefix up to the first response (computed once online)
    ab = judge.prompt("helpfulness", context, chosen, rejected)
    ba = judge.prompt("helpfulness", context, rejected, chosen)
    assert ab.prefix == ba.prefix and ab.suffix != ba.suffix


# --------------------------------------------------------------------------
# Truncation
# --------------------------------------------------------------------------

TURNS = ({"role": "user", "content": "First question, with some extra words in it?"},
         {"role": "assistant", "content": "First answer."},
         {"role": "user", "content": "Second question here?"},
         {"role": "assistant", "content": "Second answer."})


def test_conversation_truncation_drops_turns_then_trims_user(tokenizer, chat):
    full, _ = examples.encode_sft(chat, Conversation(TURNS), None)
    last = [("<|im_start|>user\n", False), ("Second question here?", False),
            ("<|im_end|>\n<|im_start|>assistant\n", False),
            ("Second answer.<|im_end|>", True), ("\n", False)]
    want, mask = spans(tokenizer, [(SYS, False)] + last)

    # one token too long: the first exchange is dropped
    example, truncated = examples.encode_sft(chat, Conversation(TURNS), len(full) - 1)
    assert truncated and example.tokens.tolist() == want
    assert example.loss_mask.tolist() == mask.tolist()

    # two tokens shorter than the last exchange: its user text loses its first 2 tokens
    example, truncated = examples.encode_sft(chat, Conversation(TURNS), len(want) - 2)
    head = ids(tokenizer, SYS + "<|im_start|>user\n")
    user = ids(tokenizer, "Second question here?")
    assert truncated and len(example) == len(want) - 2
    assert example.tokens.tolist() == head + user[2:] + want[len(head) + len(user):]
    assert example.loss_mask.tolist() == mask[:len(head)].tolist() + mask[len(head) + 2:].tolist()
    assert tokenizer.decode(example.tokens[example.loss_mask]) == "Second answer.<|im_end|>"

    # the target (and the template around it) cannot fit: dropped and counted
    fixed = len(want) - len(user)
    built, stats = examples.build_jsft_examples(
        [Conversation(TURNS, "c:1"), Conversation(TURNS[2:], "c:2")], [], chat, None,
        fixed - 1)
    assert built == [] and dict(stats.dropped) == {"sft": 2}
    assert stats.drop_messages[0].startswith("c:1: the last assistant turn does not fit")
    example, truncated = examples.encode_sft(chat, Conversation(TURNS), fixed)
    assert truncated and example is not None and len(example) == fixed  # user text all gone


def test_judgment_truncation_trims_context_keeps_target(tokenizer, judge):
    context = "User: " + " ".join(f"word{i}" for i in range(40))
    judgment = Judgment(context, "Yes.", "No.", source="j:1")
    (full, _), _ = examples.encode_judgment(judge, judgment, None)
    start = len(ids(tokenizer, SYS + JUDGE_USER))  # where the context starts
    built = examples.encode_judgment(judge, judgment, len(full) - 3)
    example, truncated = built[0]
    assert truncated and len(example) == len(full) - 3
    want = full.tokens[:start].tolist() + full.tokens[start + 3:].tolist()
    assert example.tokens.tolist() == want
    assert example.loss_mask.sum() == 2 and example.loss_mask[-2:].all()

    # responses that cannot fit: both orders dropped and counted; responses never trimmed
    long = Judgment("User: hi", "word " * 300, "No.", source="j:2")
    built, stats = examples.build_jsft_examples([], [judgment, long], None, judge,
                                                len(full) - 3)
    assert dict(stats.dropped) == {"judge": 2} and dict(stats.built) == {"sft": 0, "judge": 2}
    assert dict(stats.truncated) == {"judge": 2}
    assert [e.source for e in built] == ["j:1:AB", "j:1:BA"]


def test_trim_longest_matches_the_one_token_at_a_time_rule():
    def reference(a, b, budget):
        budget, trimmed = max(budget, 2), 0
        while len(a) + len(b) > budget:
            if len(a) >= len(b):
                a = a[:-1]
            else:
                b = b[:-1]
            trimmed += 1
        return a, b, trimmed
    rng = random.Random(0)
    for _ in range(3000):
        a = list(range(rng.randint(0, 25)))
        b = list(range(100, 100 + rng.randint(0, 25)))
        budget = rng.randint(-2, 55)
        assert _trim_longest(a, b, budget) == reference(a, b, budget)


# --------------------------------------------------------------------------
# Mixing
# --------------------------------------------------------------------------

def test_sft_judgment_mixing_ratio(chat, judge):
    conversations = [Conversation(({"role": "user", "content": f"Q{i}"},
                                   {"role": "assistant", "content": f"A{i}"}), f"c:{i}")
                     for i in range(4)]
    judgments = [Judgment(f"User: Q{i}", f"A{i}", "no", source=f"j:{i}") for i in range(3)]
    built, stats = examples.build_jsft_examples(conversations, judgments, chat, judge, None)
    assert dict(stats.built) == {"sft": 4, "judge": 6}
    # 0.5 SFT per judgment example: 3 of the 4 conversations
    built, stats = examples.build_jsft_examples(conversations, judgments, chat, judge, None,
                                                sft_per_judge=0.5)
    assert dict(stats.built) == {"sft": 3, "judge": 6} and stats.mixed_out["sft"] == 1
    # 2 SFT per judgment example: only 4 SFT, so 2 judgment examples (one pair, both orders)
    built, stats = examples.build_jsft_examples(conversations, judgments, chat, judge, None,
                                                sft_per_judge=2.0)
    assert dict(stats.built) == {"sft": 4, "judge": 2} and stats.mixed_out["judge"] == 4
    judge_sources = [e.source for e in built if e.kind == "judge"]
    assert judge_sources[0][:-3] == judge_sources[1][:-3]  # the two orders of one pair


# --------------------------------------------------------------------------
# DPO pairs
# --------------------------------------------------------------------------

def test_dpo_pair_masks_only_the_response(tokenizer, chat):
    context = TURNS[:3]
    judgment = Judgment("unused", "Second answer.", "I will not answer that one.",
                        source="p:1", messages=context)
    pairs, stats = examples.build_dpo_pairs([judgment], chat, None)
    assert dict(stats.built) == {"pref": 1}
    pair = pairs[0]
    prompt = (SYS + "<|im_start|>user\nFirst question, with some extra words in it?<|im_end|>"
              "\n<|im_start|>assistant\nFirst answer.<|im_end|>\n<|im_start|>user\nSecond "
              "question here?<|im_end|>\n<|im_start|>assistant\n")
    for row, response, kind in ((pair.chosen, "Second answer.", "pref_chosen"),
                                (pair.rejected, "I will not answer that one.", "pref_rejected")):
        want, mask = spans(tokenizer, [(prompt, False), (response + "<|im_end|>", True),
                                       ("\n", False)])
        assert row.tokens.tolist() == want and row.loss_mask.tolist() == mask.tolist()
        assert row.kind == kind
    # the same through a (Prompt, chosen, rejected) triple
    triple = (Prompt(context, "unused", source="p:1"), judgment.chosen, judgment.rejected)
    (again,), _ = examples.build_dpo_pairs([triple], chat, None)
    assert again.chosen.tokens.tolist() == pair.chosen.tokens.tolist()
    assert again.rejected.loss_mask.tolist() == pair.rejected.loss_mask.tolist()


def test_dpo_pair_truncation_shares_the_prompt(chat):
    judgment = Judgment("unused", "Short.", "A much longer rejected response " * 3,
                        source="p:2", messages=TURNS[:3])
    (full,), _ = examples.build_dpo_pairs([judgment], chat, None)
    max_length = len(full.rejected) - 1
    (pair,), stats = examples.build_dpo_pairs([judgment], chat, max_length)
    assert dict(stats.truncated) == {"pref": 1}
    assert len(pair.rejected) <= max_length and len(pair.chosen) < len(pair.rejected)
    n_prompt_c = int(np.argmax(pair.chosen.loss_mask))
    n_prompt_r = int(np.argmax(pair.rejected.loss_mask))
    assert n_prompt_c == n_prompt_r
    assert pair.chosen.tokens[:n_prompt_c].tolist() == pair.rejected.tokens[:n_prompt_r].tolist()
    # responses are whole: the masked parts are the untruncated ones
    for row, full_row in ((pair.chosen, full.chosen), (pair.rejected, full.rejected)):
        assert row.tokens[row.loss_mask].tolist() == full_row.tokens[full_row.loss_mask].tolist()
    pairs, stats = examples.build_dpo_pairs([judgment], chat, 20)
    assert pairs == [] and dict(stats.dropped) == {"pref": 1}
