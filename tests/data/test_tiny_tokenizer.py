"""The tiny tokenizer: deterministic vocabulary, exact round trip, digits one by one,
single-token judge tokens, ChatML through ChatEncoder / JudgePromptBuilder, save/load."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from sjjax.data import synthetic
from sjjax.data.records import render_context
from sjjax.data.templates import (ChatEncoder, JudgePromptBuilder, default_judge_templates,
                                  resolve_judge_tokens, validate_judge_templates)
from sjjax.data.tiny_tokenizer import build_tiny_tokenizer, training_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def _fingerprint(tokenizer) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


def test_building_twice_gives_the_same_vocabulary(tok):
    again = build_tiny_tokenizer()
    assert again.get_vocab() == tok.get_vocab()
    assert _fingerprint(again) == _fingerprint(tok)
    # In a fresh process with another hash seed too (no dependence on set/dict order).
    code = ("from sjjax.data.tiny_tokenizer import build_tiny_tokenizer as b; import hashlib;"
            "print(hashlib.sha256(b().backend_tokenizer.to_str().encode()).hexdigest())")
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == _fingerprint(tok)
    assert 300 <= len(tok) <= 2048


def test_special_tokens_and_padding(tok):
    assert (tok.pad_token, tok.pad_token_id) == ("<|pad|>", 0)
    assert tok.convert_tokens_to_ids("<|im_start|>") == 1
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", 2)
    assert tok.bos_token is None and tok.padding_side == "left"
    assert tok("The answer is 5.")["input_ids"] == \
        tok("The answer is 5.", add_special_tokens=False)["input_ids"]  # nothing added


def _suite_texts():
    tasks = synthetic.generate(11, 4) + synthetic.generate(11, 4, "heldout")
    texts = list(training_corpus(seed=3, n_per_cell=2))
    for pair, task in zip(synthetic.labelled_pairs(tasks, seed=11), tasks):
        texts += [task.question, pair.chosen, pair.rejected, task.context]
    return texts


def test_round_trip(tok):
    extra = ["", " ", "  leading and trailing  ", "tabs\tand\nnew\n\nlines\r\n",
             "Ünïcödé — “quotes” 😀 中文", "<|im_end|> inside text", "x9y 007 -3.25e10",
             "The answer is 52.\n\n[Response A]\nThe answer is 47."]
    for text in _suite_texts() + extra:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text, text
        ids = tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        assert tok.decode(ids) == text, text


def test_digits_are_single_tokens(tok):
    vocab = tok.get_vocab()
    with_digits = [t for t in vocab if any(c in "0123456789" for c in t)]
    assert sorted(with_digits) == list("0123456789"), with_digits  # no merge touches a digit
    ids = tok("The answer is 1234, 56.", add_special_tokens=False)["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces[pieces.index("1"):pieces.index("1") + 4] == ["1", "2", "3", "4"]
    assert ["5", "6"] == pieces[pieces.index("5"):pieces.index("5") + 2]


def test_judge_tokens_are_single_and_distinct(tok):
    a, b = resolve_judge_tokens(tok, (" A", " B"))
    assert a != b
    assert tok.convert_ids_to_tokens([a, b]) == ["ĠA", "ĠB"]
    # The suite's words are whole tokens (a from-scratch model sees short sequences).
    assert tok.convert_ids_to_tokens(tok(" answer", add_special_tokens=False)["input_ids"]) \
        == ["Ġanswer"]


def test_chat_encoder_loss_mask_by_hand(tok):
    encoded, starts = ChatEncoder(tok).encode_conversation(
        [{"role": "user", "content": "What is 3 + 5?"},
         {"role": "assistant", "content": "The answer is 8."}])
    pieces = tok.convert_ids_to_tokens(encoded.tokens.tolist())
    expected = [
        ("<|im_start|>", 0), ("user", 0), ("Ċ", 0), ("What", 0), ("Ġis", 0), ("Ġ", 0),
        ("3", 0), ("Ġ+", 0), ("Ġ", 0), ("5", 0), ("?", 0), ("<|im_end|>", 0), ("Ċ", 0),
        ("<|im_start|>", 0), ("assistant", 0), ("Ċ", 0),
        ("The", 1), ("Ġanswer", 1), ("Ġis", 1), ("Ġ", 1), ("8", 1), (".", 1),
        ("<|im_end|>", 1), ("Ċ", 0)]
    assert list(zip(pieces, encoded.loss_mask.astype(int).tolist())) == expected
    assert starts == [3, 16]
    # The piece-wise ids are the template's own tokenization of the whole text.
    text = tok.apply_chat_template([{"role": "user", "content": "What is 3 + 5?"},
                                    {"role": "assistant", "content": "The answer is 8."}],
                                   tokenize=False)
    assert text == ("<|im_start|>user\nWhat is 3 + 5?<|im_end|>\n"
                    "<|im_start|>assistant\nThe answer is 8.<|im_end|>\n")
    assert tok(text, add_special_tokens=False)["input_ids"] == encoded.tokens.tolist()
    prompt = ChatEncoder(tok).encode_prompt([{"role": "user", "content": "Hi"}])
    assert tok.decode(prompt) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_judge_prompt_builder_works(tok):
    templates = validate_judge_templates(default_judge_templates(), ["helpfulness"])
    builder = JudgePromptBuilder(tok, templates)
    task = synthetic.generate(0, 1, families=["compare"], levels=[2])[0]
    pair = synthetic.labelled_pairs([task])[0]
    encoded, prompt = builder.training_example("helpfulness", task.context, pair.chosen,
                                               pair.rejected, chosen_first=False)
    targets = encoded.tokens[encoded.loss_mask].tolist()
    assert targets == [builder.token_ids[1], tok.eos_token_id]  # " B", then <|im_end|>
    user = templates["helpfulness"].user.format(context=task.context,
                                                response_a=pair.rejected,
                                                response_b=pair.chosen)
    assert tok.decode(prompt.ids) == (f"<|im_start|>user\n{user}<|im_end|>\n"
                                      f"<|im_start|>assistant\nAnswer:")
    assert np.array_equal(prompt.ids, encoded.tokens[:len(prompt.ids)])
    assert task.context == render_context(task.messages)


def test_save_and_load(tok, tmp_path):
    from transformers import AutoTokenizer

    from sjjax.model.tokenizer import load_tokenizer
    tok.save_pretrained(tmp_path)
    for loaded in (AutoTokenizer.from_pretrained(str(tmp_path)), load_tokenizer(str(tmp_path))):
        assert loaded.get_vocab() == tok.get_vocab()
        assert loaded.chat_template == tok.chat_template
        assert (loaded.pad_token_id, loaded.eos_token_id) == (0, 2)
        assert loaded.padding_side == "left"
        for text in _suite_texts()[:50]:
            assert loaded(text)["input_ids"] == tok(text)["input_ids"]
        assert resolve_judge_tokens(loaded, (" A", " B")) == resolve_judge_tokens(tok,
                                                                                   (" A", " B"))


def test_right_and_wrong_answers_have_the_same_token_count(tok):
    """No surface cue: a pair's two responses are equally long in tokens."""
    tasks = synthetic.generate(0, 20)
    for task, pair in zip(tasks, synthetic.labelled_pairs(tasks, seed=0)):
        n_chosen = len(tok(pair.chosen, add_special_tokens=False)["input_ids"])
        n_rejected = len(tok(pair.rejected, add_special_tokens=False)["input_ids"])
        assert n_chosen == n_rejected, (task.question, pair.chosen, pair.rejected)


@pytest.fixture(scope="module")
def pairs_tok():
    return build_tiny_tokenizer(numbers="pairs")


def test_pairs_make_every_one_or_two_digit_number_one_token(pairs_tok, tmp_path):
    from transformers import AutoTokenizer
    for n in list(range(100)) + ["00", "05", "09"]:
        pieces = pairs_tok.convert_ids_to_tokens(
            pairs_tok(f"Is {n} in the list?", add_special_tokens=False)["input_ids"])
        assert pieces[:3] == ["Is", "Ġ", str(n)], pieces
    # Longer numbers: pairs from the left; the text round-trips.
    text = "The answer is 1234, 567, 8."
    ids = pairs_tok(text, add_special_tokens=False)["input_ids"]
    pieces = pairs_tok.convert_ids_to_tokens(ids)
    assert pieces[pieces.index("12"):pieces.index("12") + 2] == ["12", "34"]
    assert pieces[pieces.index("56"):pieces.index("56") + 2] == ["56", "7"]
    assert pairs_tok.decode(ids) == text
    for text in _suite_texts()[:200]:
        assert pairs_tok.decode(pairs_tok(text, add_special_tokens=False)["input_ids"]) == text
    # The judge tokens stay single and distinct; the split survives save/load.
    a, b = resolve_judge_tokens(pairs_tok, (" A", " B"))
    assert a != b
    pairs_tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert loaded("58, 23, 61")["input_ids"] == pairs_tok("58, 23, 61")["input_ids"]
    assert len(pairs_tok("58, 23, 61", add_special_tokens=False)["input_ids"]) == 7


def test_unknown_numbers_option_names_the_config_key():
    with pytest.raises(ValueError, match="model.tiny.numbers"):
        build_tiny_tokenizer(numbers="words")


def test_config_key_builds_a_pairs_model(pairs_tok):
    """config.model.tiny.numbers reaches the tokenizer; the model's vocabulary follows."""
    import ml_collections

    from sjjax.phases.common import load_policy
    tiny = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                num_kv_heads=1, head_dim=16, numbers="pairs")
    policy = load_policy(ml_collections.ConfigDict(dict(seed=0, model=dict(
        source="tiny", tiny=tiny, dtype="float32", param_dtype="float32", remat="none"))))
    assert policy.tokenizer.get_vocab() == pairs_tok.get_vocab()
    assert policy.model_config.vocab_size == len(pairs_tok) > len(build_tiny_tokenizer())
