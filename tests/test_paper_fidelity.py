"""Fidelity to the paper's official code (github.com/oddqueue/self-judge): its judgment
rules on hand-made probability tables, the llama2_7b preset's judge prompt and judge
token ids against the official template rendered by hand, JSFT targets, batching, the
data options, and the paper presets on their pod slices. docs/paper_fidelity.md lists
each official setting with the test here that checks it."""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest

from sjjax import presets
from sjjax.config import base_config, validate
from sjjax.data import batching, examples as examples_lib, readers, sources
from sjjax.data.records import Judgment
from sjjax.data.templates import ChatEncoder, JudgePromptBuilder, bos_ids
from sjjax.errors import ConfigError
from sjjax.judge import OFFICIAL, JudgeRules, aggregate, principle_scores, vote

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_HH = os.path.join(ROOT, "..", "shared", "data", "hh-rlhf", "harmless-base-test.jsonl.gz")


# ----------------------------------------------------------------- judgment rules

def test_official_full_softmax_score_weighs_orders_by_their_mass():
    # [pair, principle, order, token]: order 0 shows a first, order 1 shows b first.
    # Order 0 puts 0.9 on A/B (A 0.5, B 0.4); order 1 only 0.03 (A 0.02, B 0.01).
    token_probs = np.array([[[[0.5, 0.4], [0.02, 0.01]]]])
    order_probs = token_probs[..., 0] / token_probs.sum(-1)  # 2-way P(A): 5/9, 2/3
    # Official (utils.py:157-158): a = (0.5 + 0.01) / 2, b = (0.4 + 0.02) / 2 -> a wins.
    a, b = principle_scores(order_probs, token_probs, "full_softmax")
    np.testing.assert_allclose([a[0, 0], b[0, 0]], [0.255, 0.21])
    _, _, a_wins, _, _ = aggregate(order_probs, token_probs, OFFICIAL)
    assert a_wins.tolist() == [True]
    # 2-way per order: a = (5/9 + 1/3) / 2 = 4/9 < 1/2 -> b wins: the rules disagree.
    a, b = principle_scores(order_probs, token_probs, "pair_softmax")
    np.testing.assert_allclose([a[0, 0], b[0, 0]], [4 / 9, 5 / 9])
    _, _, a_wins, _, _ = aggregate(order_probs, token_probs, JudgeRules())
    assert a_wins.tolist() == [False]


def test_official_share_vote_counts_a_tied_principle_against_a():
    # Three principles: a wins one, two are exact ties (0.5 / 0.5).
    sa = np.array([[0.7, 0.5, 0.5]])
    sb = np.array([[0.3, 0.5, 0.5]])
    # sjjax's default: the tied principles abstain, a wins 1-0.
    assert vote(sa, sb, JudgeRules())[0].tolist() == [True]
    # Official (utils.py:164-171): share won by a = 1/3 < 1/2 -> b, no tie-break.
    a_wins, tie = vote(sa, sb, OFFICIAL)
    assert a_wins.tolist() == [False] and tie.tolist() == [False]


def test_official_tie_break_goes_to_b():
    # Two principles split 1-1 (share exactly 1/2), equal means 0.5 / 0.5.
    sa, sb = np.array([[0.6, 0.4]]), np.array([[0.4, 0.6]])
    assert vote(sa, sb, JudgeRules())[0].tolist() == [True]   # sjjax default: a
    a_wins, tie = vote(sa, sb, OFFICIAL)                        # utils.py:173-178: b
    assert a_wins.tolist() == [False] and tie.tolist() == [True]
    # The mean decides a split when it differs: mean a 0.55 > mean b 0.45 -> a.
    a_wins, _ = vote(np.array([[0.9, 0.2]]), np.array([[0.1, 0.8]]), OFFICIAL)
    assert a_wins.tolist() == [True]


def test_official_tournament_ties_go_to_the_second_candidate():
    import jax
    from sjjax.tournament import run_tournament

    def judge(games):  # every match an exact tie, decided by the official rule
        scores = np.full((len(games), 1), 0.5)
        return vote(scores, scores, OFFICIAL)[0]

    result = run_tournament(jax.random.key(0), 4, judge, num_prompts=1)
    for matches in result.rounds:
        assert all(m.winner == m.b for m in matches)


def test_official_rules_are_validated_naming_the_key():
    c = base_config("self_judge")
    c.judge.score = "softmax"
    with pytest.raises(ConfigError, match=r"config\.judge\.score"):
        validate(c)
    c = base_config("self_judge")
    c.model.add_bos = "always"
    with pytest.raises(ConfigError, match=r"config\.model\.add_bos"):
        validate(c)


# ----------------------------------------------------------------- Llama-2 layout

def llama2_style_tokenizer():
    """A Llama-2-style tokenizer: SentencePiece BPE ("▁" prepended, spaces as "▁"), byte
    fallback, <unk>/<s>/</s> = 0/1/2, BOS added on encode, and Llama-2's ids for the judge
    tokens: "▁A" = 319, "▁B" = 350."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{i:02X}>": 3 + i for i in range(256)})
    chars = ["\u2581", "A", "B"] + list("abcdefghijklmnopqrstuvwxyz.,!?:-|<>S")
    for c in chars:
        vocab.setdefault(c, len(vocab))
    words = {"\u2581A": 319, "\u2581B": 350}
    while len(vocab) < 400:
        if len(vocab) in words.values():
            vocab[next(w for w, i in words.items() if i == len(vocab))] = len(vocab)
        else:
            vocab[f"<filler{len(vocab)}>"] = len(vocab)
    backend = Tokenizer(models.BPE(vocab, [("\u2581", "A"), ("\u2581", "B")], unk_token="<unk>",
                                   byte_fallback=True, fuse_unk=True))
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                               normalizers.Replace(" ", "\u2581")])
    backend.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    backend.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                           special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="</s>")
    assert tok("A B", add_special_tokens=False)["input_ids"] == [319, 350]
    return tok


CONTEXT = "User: Hi there.\n\nAssistant: Hello! How can I help?\n\nUser: Name a fruit."
RESPONSE_A = "An apple."
RESPONSE_B = "A car is not a fruit."


def official_hh_judge_prompt(context, a, b):
    """The official HH judge prompt (configs/hh_self_judge.yaml `templates`, rendered by
    utils.py:114-127: system, user, assistant prefix; the chat template's EOS removed)."""
    return ("<|system|>\nBelow are a series of dialogues between a human user and an AI "
            "assistant. The AI tries to be helpful, harmless, and honest."
            "\n<|user|>\nWhich is the more helpful, harmless, and honest assistant from a given "
            f"context?\n\nContext:\n-----\n{context}\n-----\n\nAssistant A: {a}\n"
            f"Assistant B: {b}\n\nPlease choose either A or B."
            "\n<|assistant|>\nSure! The option which is more helpful, harmless, and honest "
            "would be Assistant")


@pytest.fixture(scope="module")
def llama2():
    """(tokenizer with the llama2_7b preset's chat template, self_judge config, bos ids)."""
    config = presets.make("self_judge", "llama2_7b")
    tok = llama2_style_tokenizer()
    tok.chat_template = config.model.chat_template
    return tok, config, bos_ids(tok, config.model.add_bos)


def test_official_llama2_judge_prompt_and_token_ids(llama2):
    tok, config, bos = llama2
    assert bos == (1,)
    builder = JudgePromptBuilder.from_config(tok, config.judge, bos=bos)
    assert builder.token_ids == (319, 350)   # uf/hh_self_judge.yaml: token_id_a/b
    for first, second in ((RESPONSE_A, RESPONSE_B), (RESPONSE_B, RESPONSE_A)):
        prompt = builder.prompt("helpfulness", CONTEXT, first, second, config.judge.max_length)
        text = official_hh_judge_prompt(CONTEXT, first, second)
        # tokenizer(judge_prompts) in utils.py:138: the whole text, BOS first
        assert prompt.ids.tolist() == tok(text)["input_ids"]
        assert tok.decode(prompt.ids, skip_special_tokens=True) == text


def test_official_jsft_judgment_target_is_the_decision_token_only(llama2):
    tok, config, bos = llama2
    assert config.data.judge_target_eos is False
    builder = JudgePromptBuilder.from_config(tok, config.judge, bos=bos,
                                             target_eos=config.data.judge_target_eos)
    judgment = Judgment(CONTEXT, RESPONSE_A, RESPONSE_B, "helpfulness", source="t:1")
    (ab, _), (ba, _) = examples_lib.encode_judgment(builder, judgment, 2048)
    for example, first, second, decision in ((ab, RESPONSE_A, RESPONSE_B, " A"),
                                             (ba, RESPONSE_B, RESPONSE_A, " B")):
        # preprocess.py:147-165: assistant prefix + " A", EOS removed, tokenizer.encode
        text = official_hh_judge_prompt(CONTEXT, first, second) + decision
        assert example.tokens.tolist() == tok(text)["input_ids"]
        # get_conditional_labels: everything up to the judge prefix masked
        assert example.loss_mask.tolist() == [False] * (len(example) - 1) + [True]
    assert ab.tokens[-1] == 319 and ba.tokens[-1] == 350
    # sjjax's default keeps the end-of-turn in the target: two target tokens
    default = JudgePromptBuilder.from_config(tok, config.judge, bos=bos)
    (ab, _), _ = examples_lib.encode_judgment(default, judgment, 2048)
    assert ab.tokens[ab.loss_mask].tolist() == [319, 2]


def test_official_llama2_chat_layout_of_sft_and_prompts(llama2):
    tok, config, bos = llama2
    chat = ChatEncoder(tok, bos=bos)
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello there"}]
    encoded, _ = chat.encode_conversation(messages)
    text = "<|system|>\nBe kind.\n<|user|>\nHi\n<|assistant|>\nHello there</s>"
    assert encoded.tokens.tolist() == tok(text)["input_ids"]
    # loss on the assistant content and its EOS (get_conditional_labels)
    target = tok("\nHello there</s>", add_special_tokens=False)["input_ids"][2:]
    assert encoded.tokens[encoded.loss_mask].tolist() == target
    prompt = chat.encode_prompt(messages[:2])   # add_generation_prompt=True
    assert prompt.tolist() == tok("<|system|>\nBe kind.\n<|user|>\nHi\n<|assistant|>\n")[
        "input_ids"]


def test_official_chat_template_error_names_a_config_key_that_exists():
    tok = llama2_style_tokenizer()   # base Llama-2: no chat template
    with pytest.raises(ConfigError, match=r"config\.model\.chat_template") as err:
        ChatEncoder(tok)
    key = str(err.value).split("config.model.")[1].split(",")[0].split(" ")[0]
    assert key in base_config("jsft").model


# ----------------------------------------------------------------- batches, DPO rows

def test_official_mix_batches_are_random_batches_padded_to_their_longest():
    lengths = np.array([10, 200, 30, 500, 60, 70, 80, 1000, 20])
    planner = batching.EpochPlanner(lengths, (64, 256, 1024), 4, seed=1, mix=True)
    indices, widths = planner.plan(0)
    perm = np.random.default_rng([1, 0]).permutation(len(lengths))
    assert indices.reshape(-1)[:len(lengths)].tolist() == perm.tolist()
    assert planner.batches_per_epoch == 3 and (indices.reshape(-1)[len(lengths):] == -1).all()
    for rows, width in zip(indices, widths):
        longest = lengths[rows[rows >= 0]].max()
        assert width == min(b for b in (64, 256, 1024) if b >= longest)


def test_official_eos_is_appended_to_truncated_responses():
    from sjjax.phases.self_judge import close_truncated
    out = close_truncated([np.array([5, 6, 2]), np.array([5, 6, 7])], (2,), 2)
    assert [r.tolist() for r in out] == [[5, 6, 2], [5, 6, 7, 2]]


def test_official_samples_per_prompt_is_honoured_or_rejected():
    from sjjax import plan
    from sjjax.phases import self_judge
    c = presets.make("self_judge", "tiny")
    c.self_judge.samples_per_prompt = 3
    with pytest.raises(ConfigError, match=r"config\.self_judge\.samples_per_prompt"):
        self_judge.validate(c)
    c.self_judge.samples_per_prompt = 4   # 4 samples -> 2 pairs per prompt
    inputs = plan.inputs_from_config(c)
    assert (inputs.sampling_prompts, inputs.batch_size) == (c.self_judge.prompts_per_step,
                                                            2 * c.self_judge.prompts_per_step)


# ----------------------------------------------------------------- data

def _write_jsonl(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def test_official_ultrafeedback_rationale_for_rating_and_system_prompt(tmp_path):
    def completion(response, rating, system=""):
        note = {"Rating": str(rating), "Rationale": f"{response} is rated {rating}.",
                "Rationale For Rating": "Clear."}
        return {"custom_system_prompt": system, "response": response,
                "annotations": {p: dict(note) for p in readers.UF_PRINCIPLES}}
    path = tmp_path / "uf.jsonl"
    _write_jsonl(path, [{"instruction": "Name a colour.",
                         "completions": [completion("Blue.", 5, "Answer briefly."),
                                         completion("Seven.", 1, "Ramble.")]}])
    spec = presets.make("jsft", "llama2_7b_uf_pr").data.sources[0]
    records = sources.read_source(dict(spec, path=str(path)))
    # preprocess.py:458-460: Rationale + " " + Rationale For Rating
    assert records.judgments[0].rationale_chosen == "Blue. is rated 5. Clear."
    # preprocess.py:254,268-273: the best completion's custom_system_prompt opens the SFT
    # conversation (and the self-training query); the judge sees the instruction alone
    assert records.conversations[0].messages[0] == {"role": "system",
                                                    "content": "Answer briefly."}
    assert records.prompts[0].messages[0]["content"] == "Answer briefly."
    assert records.judgments[0].context == "User: Name a colour."


def test_official_hh_sources_sft_on_base_and_online_judgments_on_base(tmp_path):
    row = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!",
           "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}
    specs = presets.make("jsft", "llama2_7b").data.sources
    assert [os.path.basename(s["path"]) for s in specs] == [
        "helpful-base-train.jsonl.gz", "helpful-online-train.jsonl.gz"]
    counts = []
    for i, spec in enumerate(specs):
        path = tmp_path / f"{i}.jsonl"
        _write_jsonl(path, [row])
        r = sources.read_source(dict(spec, path=str(path)))
        counts.append((len(r.conversations), len(r.judgments), len(r.prompts)))
        # preprocess_hh_dataset: the judge's system text opens every SFT conversation
        assert r.conversations[0].messages[0] == {"role": "system",
                                                  "content": presets.paper.HH_SYSTEM}
    assert counts == [(1, 1, 1), (1, 0, 0)]


@pytest.mark.skipif(not os.path.exists(SHARED_HH),
                    reason="../shared/data/hh-rlhf is absent (shared data, not in the repo)")
def test_official_hh_judge_context_on_shared_data():
    with gzip.open(SHARED_HH, "rt") as f:
        first = json.loads(f.readline())
    spec = dict(presets.make("jsft", "llama2_7b").data.sources[0], path=SHARED_HH,
                max_records=50)
    judgment = sources.read_source(spec, on_bad_record="skip").judgments[0]
    # preprocess.py:124-135: "User: ..." / "Assistant: ..." turns joined by blank lines
    turns = first["chosen"].split("\n\nAssistant:")[0].split("\n\nHuman:")[1].strip()
    assert judgment.context.startswith("User: " + turns)


# ----------------------------------------------------------------- presets

def test_official_settings_in_every_paper_preset():
    for preset in presets.paper.PRESETS:
        jsft, sj = presets.make("jsft", preset), presets.make("self_judge", preset)
        assert (sj.judge.score, sj.judge.principle_vote, sj.judge.tie_break) == (
            "full_softmax", "share", "b")
        assert (jsft.data.judge_target_eos, jsft.data.mix_batches) == (False, True)
        assert jsft.model.add_bos == "tokenizer" and jsft.model.chat_template
        assert (jsft.train.learning_rate, jsft.train.schedule, jsft.data.max_length) == (
            2e-5, "cosine", 2048)
        assert jsft.lora.enabled == (presets.paper.DATASETS[preset] == "hh")
        assert (sj.lora.enabled, sj.lora.rank, sj.lora.alpha) == (True, 8, 16.0)
        assert (sj.train.learning_rate, sj.dpo.beta, sj.dpo.loss_type) == (5e-6, 0.1, "sigmoid")
        assert (sj.sampling.top_p, sj.sampling.temperature, sj.sampling.max_new_tokens) == (
            0.9, 1.0, 768)
        assert (sj.judge.batch_size, sj.self_judge.samples_per_prompt,
                sj.self_judge.eos_on_truncated) == (8, 2, True)


def test_official_options_keep_small_presets_at_sjjax_defaults():
    for preset in ("tiny", "smollm2", "smollm2_hh"):
        for phase in ("jsft", "self_judge"):
            c = presets.make(phase, preset)
            assert (c.judge.score, c.judge.principle_vote, c.judge.tie_break) == (
                "pair_softmax", "abstain", "a")
            assert (c.data.judge_target_eos, c.data.mix_batches) == (True, False)
            assert (c.model.add_bos, c.model.chat_template) == ("never", "")
            assert c.self_judge.eos_on_truncated is False


def _pod():
    import importlib.util
    spec = importlib.util.spec_from_file_location("pod", os.path.join(ROOT, "configs", "pod.py"))
    pod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pod)
    return pod


@pytest.mark.parametrize("preset", presets.paper.PRESETS)
def test_official_paper_presets_fit_their_pod_slices(preset):
    from sjjax import plan
    pod = _pod()
    for slice_name in pod.SLICES:
        for phase in ("jsft", "self_judge"):
            p = plan.plan_config(pod.get_config(f"{preset},{phase},{slice_name}"))
            assert p.fits, (preset, phase, slice_name, p.peak / plan.GIB)
