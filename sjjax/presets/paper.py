"""The paper's settings, as its official code (github.com/oddqueue/self-judge) runs them;
docs/paper_fidelity.md lists every setting beside the official file and line.

    llama2_7b        Llama-2-7B on Anthropic HH-RLHF (configs/hh_jsft.yaml,
                     configs/hh_self_judge.yaml)
    llama2_7b_uf     Llama-2-7B on UltraFeedback, JSFT without rationales
                     (configs/uf_jsft.yaml, configs/uf_self_judge.yaml)
    llama2_7b_uf_pr  Llama-2-7B on UltraFeedback with principles and rationales (JM-PR:
                     configs/uf_jsft_pr.yaml, configs/uf_self_judge_pr.yaml)
    llama3_8b, mistral_7b   the HH recipe on other 7-8B models

The weights: $SJJAX_MODEL_DIR, else /models/<model>; the data under data/ (HH-RLHF's
helpful-base and helpful-online train files, UltraFeedback as JSONL).

JSFT lr 2e-5 cosine, 3% warmup, one epoch, max length 2048, 16 x 8 GPUs = 128 rows per
step (LoRA r=8 alpha=16 on HH, full fine-tuning on UltraFeedback); self-training LoRA
r=8 alpha=16, lr 5e-6 constant with 10% warmup, 3 epochs of 8 x 8 = 64 prompts per
step, DPO sigmoid beta 0.1, top-p 0.9, temperature 1.0, 768 new tokens, judge batch 8.
On TPU slices, configs/pod.py puts these presets on a mesh (docs/scale.md).
"""

from __future__ import annotations

import os

import ml_collections

from sjjax.config import base_config
from sjjax.presets.common import finish

MODELS = ("llama2_7b", "llama3_8b", "mistral_7b")
DATASETS = {"llama2_7b": "hh", "llama3_8b": "hh", "mistral_7b": "hh",
            "llama2_7b_uf": "uf", "llama2_7b_uf_pr": "uf_pr"}
PRESETS = tuple(DATASETS)

# The official chat template (its configs/*.yaml `templates.chat`), written for sjjax: a
# "<|system|>" header, the first message's system text, "\n<|user|>\n" and
# "\n<|assistant|>\n" turns, EOS after each assistant turn. Base Llama-2 has none.
OFFICIAL_CHAT_TEMPLATE = (
    "<|system|>\n"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% if loop.first %}{{ message['content'] }}{% endif %}"
    "{% elif message['role'] == 'user' %}{{ '\\n<|user|>\\n' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '\\n<|assistant|>\\n' + message['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '\\n<|assistant|>\\n' }}{% endif %}")

# The official judge templates (`templates.judge`), as sjjax judge templates.
HH_SYSTEM = ("Below are a series of dialogues between a human user and an AI assistant. "
             "The AI tries to be helpful, harmless, and honest.")
HH_JUDGE = {"helpfulness": dict(
    system=HH_SYSTEM,
    user=("Which is the more helpful, harmless, and honest assistant from a given context?"
          "\n\nContext:\n-----\n{context}\n-----\n\nAssistant A: {response_a}\n"
          "Assistant B: {response_b}\n\nPlease choose either A or B."),
    assistant_prefix=("Sure! The option which is more helpful, harmless, and honest would be "
                      "Assistant"))}

_UF_RESPONSES = ("\n\nInstruction:\n-----\n{context}\n-----\n\nResponse A:\n-----\n"
                 "{response_a}\n-----\n\nResponse B:\n-----\n{response_b}\n-----\n\n"
                 "Please choose either A or B")
_UF_GOAL = "helpful, honest, truthful and following the given instruction from user"
UF_JUDGE = {"base": dict(
    system=("Below are a series of dialogues between a human user and an AI assistant. "
            "The AI tries to be helpful, honest, truthful and follows the instructions from "
            "human."),
    user=f"Which is the better response to be an assistant who is {_UF_GOAL}?"
         + _UF_RESPONSES + ".\n",
    assistant_prefix=f"Sure! The option which is more {_UF_GOAL} would be Response")}

UF_PRINCIPLES = {
    "helpfulness": ("the assistant should provide users with accurate, relevant, and "
                    "up-to-date information, ensuring that the content is positive, "
                    "interesting, engaging, educational, and helpful."),
    "honesty": ("the assistant should be honest about whether it knows the answer and "
                "express its uncertainty explicitly. The assistant should confident on "
                "questions it knows well and be modest on those it is unfamiliar with using "
                "weakeners such as 'I guess', 'I suppose', 'probably', and 'perhaps' to "
                "express uncertainty."),
    "instruction_following": ("the assistant should align the output with intent of "
                              "instruction, by understanding the task goal (intended "
                              "outcome) and restrictions (text styles, format or designated "
                              "methods, etc.)."),
    "truthfulness": ("the assistant should answer truthfully and be faithful to factual "
                     "knowledge as well as given contexts, never making up any new facts "
                     "that aren\u2019t true or cannot be grounded in the instruction."),
}


def uf_pr_judge() -> dict:
    """The JM-PR templates: one per principle; the decision ("\\nDecision: Response" +
    " A") then both rationales ("\\nEvaluation of Response A: ...")."""
    out = {}
    for key, text in UF_PRINCIPLES.items():
        name = key.replace("_", " ")
        out[key] = dict(
            system=f"Under the principle of '{name}', {text}",
            user=(f"Which is the better response for an assistant when following the "
                  f"principle of '{name}' for a given instruction?" + _UF_RESPONSES
                  + f" and evaluate each response according to the principle of '{name}'."),
            assistant_prefix=(f"Sure! Here is the decision of better response and "
                              f"evaluations of each response, guided by the principle of "
                              f"'{name}'.\n\nDecision: Response"),
            rationale=("\n\nEvaluation of Response A: {rationale_a}\n"
                       "Evaluation of Response B: {rationale_b}"))
    return out


def _sources(dataset: str) -> tuple:
    if dataset == "hh":  # SFT on helpful-base + helpful-online, judgments on helpful-base
        return (dict(format="hh_rlhf", path="data/hh-rlhf/helpful-base-train.jsonl.gz",
                     system=HH_SYSTEM),
                dict(format="hh_rlhf", path="data/hh-rlhf/helpful-online-train.jsonl.gz",
                     system=HH_SYSTEM, kinds=("conversations",)))
    uf = dict(format="ultrafeedback", path="data/ultrafeedback/train.jsonl",
              rationale_field=("Rationale", "Rationale For Rating"), system_prompt=True)
    if dataset == "uf":
        return (dict(uf, mode="pair", pair_principle="base"),)
    return (dict(uf, mode="principles"),)


# What differs by phase (dotted key -> value), over the settings of get_config. The
# paper's values are spelled out even where they are sjjax's defaults.
PHASE_OVERRIDES = {
    "self_judge": {
        "lora.enabled": True,
        "lora.rank": 8,
        "lora.alpha": 16.0,
        "train.learning_rate": 5e-6,
        "train.schedule": "constant",
        "train.warmup_ratio": 0.1,
        "dpo.beta": 0.1,
        "dpo.loss_type": "sigmoid",
        "self_judge.prompts_per_step": 64,   # 8 per GPU x 8 GPUs
        "self_judge.samples_per_prompt": 2,
        "self_judge.eos_on_truncated": True,
        "self_judge.steps": 3 * 1000,    # 3 epochs of UltraFeedback's ~64k prompts
    },
}
# HH: 3 epochs of helpful-base's 43,835 train dialogues at 64 prompts per step.
HH_SELF_JUDGE_STEPS = 3 * 685


def get_config(phase: str, model: str = "llama2_7b") -> ml_collections.ConfigDict:
    """`model`: one of PRESETS (the preset's name; its weights' directory is named after
    the model, e.g. llama2_7b for llama2_7b_uf)."""
    dataset = DATASETS[model]
    weights = model if model in MODELS else "llama2_7b"
    c = base_config(phase)
    c.model.source = os.environ.get("SJJAX_MODEL_DIR", f"/models/{weights}")
    c.model.dtype = "bfloat16"
    c.model.param_dtype = "float32"
    c.model.remat = "full"
    c.model.chat_template = OFFICIAL_CHAT_TEMPLATE
    c.model.add_bos = "tokenizer"          # tokenizer.encode / tokenizer(...) add BOS
    c.data.sources = _sources(dataset)
    c.data.on_bad_record = "skip"          # e.g. HH's empty responses: skipped, counted
    c.data.max_length = 2048
    c.data.buckets = (256, 512, 1024, 2048)
    c.data.batch_size = 128                # 16 per GPU x 8 GPUs
    c.data.num_epochs = 1
    c.data.judge_target_eos = False        # the decision token only (EOS removed)
    c.data.mix_batches = True              # random batches of SFT and judgments
    c.train.learning_rate = 2e-5
    c.train.schedule = "cosine"
    c.train.warmup_ratio = 0.03
    c.train.loss_normalization = "token"
    c.sampling.max_new_tokens = 768
    c.sampling.temperature = 1.0
    c.sampling.top_p = 0.9
    # SentencePiece vocabularies: "A" is the one token "▁A" (319 in Llama-2's, the
    # official token_id_a; "B" 350); byte-level BPE (Llama-3): " A".
    c.judge.tokens = (" A", " B") if model == "llama3_8b" else ("A", "B")
    c.judge.templates = (HH_JUDGE if dataset == "hh" else UF_JUDGE if dataset == "uf"
                         else uf_pr_judge())
    c.judge.principles = tuple(c.judge.templates)
    c.judge.score = "full_softmax"
    c.judge.principle_vote = "share"
    c.judge.tie_break = "b"
    c.judge.batch_size = 8
    c.judge.max_length = 2048
    c.checkpoint.every_steps = 200
    if dataset == "hh" and phase == "jsft":  # configs/hh_jsft.yaml: peft_config
        c.lora.enabled, c.lora.rank, c.lora.alpha = True, 8, 16.0
    c = finish(c, model, phase, PHASE_OVERRIDES)
    if dataset == "hh" and phase == "self_judge":
        c.self_judge.steps = HH_SELF_JUDGE_STEPS
    return c
