"""Named setups ("presets") for every phase: the configs in configs/ are thin calls to
`make(phase, preset)`, so one preset means the same data, model and budget in every
phase (and the pipeline wires their run directories together).

    tiny          from-scratch ~3M-parameter model on the synthetic suite (CPU, minutes)
    smollm2       SmolLM2-135M-Instruct on the synthetic suite (CPU: an hour or two)
    smollm2_hh    SmolLM2-135M-Instruct on HH-RLHF (../shared/data)
    llama2_7b     the paper's settings (Llama-2-7B, TPU/GPU)
    llama3_8b, mistral_7b   the same recipe on other 7-8B models

On TPU slices, configs/pod.py puts the 7-8B presets on a mesh (docs/scale.md).
"""

from __future__ import annotations

import os

import ml_collections

from sjjax.config import base_config

PRESETS = ("tiny", "smollm2", "smollm2_hh", "llama2_7b", "llama3_8b", "mistral_7b")
PHASE_NAMES = ("sft", "jsft", "dpo", "self_judge", "tournament", "evaluate", "generate")

# Families and levels of the synthetic suite each preset trains on. The tiny model is
# trained from scratch in minutes: its tasks are those whose answers a judge can verify
# by a first-order property of the two candidates (the larger number, a sorted list).
# With both directions asked, or with membership/count/arithmetic, a judge this small
# stayed at chance after hundreds of steps (measured; see docs/results.md).
TINY_TASKS = dict(families=("compare", "minmax", "sort"), levels=(1, 2),
                  directions={"compare": ("larger",), "minmax": ("largest",),
                              "sort": ("ascending",)})
COMPACT_JUDGE_TEMPLATE = {"helpfulness": dict(
    system="", user="{context}\n\nA: {response_a}\nB: {response_b}\nWhich is right?",
    assistant_prefix="Answer:")}
SMOLLM2_TASKS = dict(families=("compare", "arithmetic", "membership", "sort", "minmax",
                               "count"), levels=(1, 2))


def runs_root(preset: str) -> str:
    return os.path.join("runs", preset)


def synthetic_source(tasks: dict, n_sft: int, n_pairs: int, n_prompts: int,
                     wrong_fraction: float, seed: int = 0, split: str = "train") -> dict:
    source = dict(format="synthetic", seed=seed, n_sft=n_sft, n_pairs=n_pairs,
                  n_prompts=n_prompts, wrong_fraction=wrong_fraction,
                  families=tuple(tasks["families"]), levels=tuple(tasks["levels"]), split=split)
    if tasks.get("directions"):
        source["directions"] = dict(tasks["directions"])
    return source


def _common(c: ml_collections.ConfigDict, preset: str, phase: str):
    root = runs_root(preset)
    c.run_dir = os.path.join(root, phase)
    c.data.tfds_dir = os.path.join(root, "tfds")
    # The model each phase starts from (the previous phase's run directory).
    start = {"sft": None, "jsft": None, "dpo": os.path.join(root, "sft"),
             "self_judge": os.path.join(root, "jsft"),
             "tournament": os.path.join(root, "self_judge"),
             "evaluate": os.path.join(root, "self_judge"), "generate": None}[phase]
    return start


def _tiny(c, phase, start):
    c.model.source = start or "tiny"
    c.model.tiny = ml_collections.ConfigDict(dict(
        hidden_size=256, intermediate_size=768, num_layers=4, num_heads=8, num_kv_heads=4,
        head_dim=32, max_position_embeddings=512, tie_word_embeddings=True,
        rope_theta=10000.0, vocab_size=1024, tokenizer_seed=0))
    c.data.sources = (synthetic_source(TINY_TASKS, n_sft=2000, n_pairs=1000, n_prompts=256,
                                       wrong_fraction=0.1),)
    c.judge.templates = COMPACT_JUDGE_TEMPLATE
    c.data.max_length = 160
    c.data.buckets = (64, 96, 128, 160)
    c.data.batch_size = 32
    c.data.num_epochs = 1
    c.train.learning_rate = 1e-3
    c.train.schedule = "cosine"
    c.train.warmup_ratio = 0.05
    c.train.weight_decay = 0.01
    c.train.loss_normalization = "example"
    c.train.judge_loss_weight = 1.0
    c.sampling.max_new_tokens = 24
    c.sampling.batch_size = 32
    c.judge.max_length = 256
    c.judge.batch_size = 32
    c.checkpoint.every_steps = 100
    if phase == "dpo":
        c.train.learning_rate = 1e-4
        c.train.schedule = "constant"
        c.train.warmup_ratio = 0.1
        c.data.num_epochs = 1
    if phase == "self_judge":
        c.train.learning_rate = 5e-5
        c.train.schedule = "constant"
        c.train.warmup_ratio = 0.1
        c.self_judge.prompts_per_step = 32
        c.self_judge.steps = 40
        c.checkpoint.every_steps = 10


def _smollm2(c, phase, start, hh: bool):
    c.model.source = start or "smollm2"
    c.lora.enabled = phase == "self_judge"
    c.lora.rank, c.lora.alpha = 8, 16.0
    c.lora.targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                      "down_proj")
    if hh:
        hh_path = os.path.join("..", "shared", "data", "hh-rlhf", "harmless-base-test.jsonl.gz")
        c.data.sources = (dict(format="hh_rlhf", path=hh_path, split="train",
                               heldout_fraction=0.1, max_records=400),)
        c.data.on_bad_record = "skip"
        # Per-example loss normalisation: with per-token normalisation the single
        # decision token of a judgment is outweighed by ~100-token HH responses (on the
        # synthetic preset, with its shorter answers, per-token JSFT left SmolLM2's judge
        # position-biased: docs/results.md).
        c.train.loss_normalization = "example"
        # 8 x 512 tokens in one micro-batch plans at 15.4 GiB (and measured 16.5 GB: the
        # OOM killer stopped it on a 24 GiB machine beside another run); two micro-batches
        # of 4 plan at 9.2 GiB for the same step.
        c.train.grad_accum = 2
        c.evaluate.num_prompts = 64
        c.data.max_length = 512
        c.data.buckets = (128, 256, 512)
        c.sampling.max_new_tokens = 128
        c.evaluate.num_pairs = 128          # held-out HH pairs (judge accuracy)
        c.evaluate.tournament_prompts = 16
        alpaca = os.path.join("..", "shared", "data", "alpaca_eval",
                              "text_davinci_003_outputs.json")
        # Win rate against text-davinci-003 where the shared data is present.
        c.evaluate.win_rate_references = alpaca if os.path.exists(alpaca) else ""
        c.evaluate.win_rate_items = 32
    else:
        c.data.sources = (synthetic_source(SMOLLM2_TASKS, n_sft=50, n_pairs=40,
                                           n_prompts=64, wrong_fraction=0.1),)
        c.data.max_length = 384
        c.data.buckets = (128, 192, 256, 384)
        c.sampling.max_new_tokens = 48
        c.self_samples.num_prompts = 256
        c.self_samples.samples_per_prompt = 4
        c.evaluate.num_prompts = 128
        c.evaluate.num_pairs = 128
        c.evaluate.tournament_prompts = 32
    c.data.batch_size = 8
    c.data.num_epochs = 1
    c.train.learning_rate = 5e-5  # full fine-tuning of a 135M model for one short epoch
    c.train.schedule = "cosine"
    c.train.warmup_ratio = 0.03
    c.judge.max_length = 512
    c.judge.batch_size = 8
    c.sampling.batch_size = 8
    c.checkpoint.every_steps = 25
    if phase == "dpo":
        c.train.learning_rate = 5e-6
    if phase == "self_judge":
        c.train.learning_rate = 1e-4  # LoRA adapters (r=8) on every projection
        c.train.schedule = "constant"
        c.train.warmup_ratio = 0.1
        c.self_judge.prompts_per_step = 8
        c.self_judge.steps = 60
        c.checkpoint.every_steps = 5


def _paper(c, phase, start, architecture: str):
    """The paper's settings (Llama-2-7B): JSFT lr 2e-5 cosine, 3% warmup, max length 2048;
    self-training LoRA r=8 alpha=16, lr 5e-6 constant with 10% warmup, beta 0.1,
    top-p 0.9, temperature 1.0, 768 new tokens."""
    c.model.source = start or os.environ.get("SJJAX_MODEL_DIR", f"/models/{architecture}")
    c.model.dtype = "bfloat16"
    c.model.param_dtype = "float32"
    c.model.remat = "full"
    c.data.sources = (dict(format="hh_rlhf", path="data/hh-rlhf/helpful-base-train.jsonl.gz"),)
    c.data.max_length = 2048
    c.data.buckets = (256, 512, 1024, 2048)
    c.data.batch_size = 64
    c.data.num_epochs = 1
    c.train.learning_rate = 2e-5
    c.train.schedule = "cosine"
    c.train.warmup_ratio = 0.03
    c.sampling.max_new_tokens = 768
    c.sampling.temperature = 1.0
    c.sampling.top_p = 0.9
    c.judge.max_length = 2048
    c.checkpoint.every_steps = 200
    if phase == "self_judge":
        c.lora.enabled = True
        c.lora.rank, c.lora.alpha = 8, 16.0
        c.train.learning_rate = 5e-6
        c.train.schedule = "constant"
        c.train.warmup_ratio = 0.1
        c.dpo.beta = 0.1
        c.self_judge.prompts_per_step = 64
        c.self_judge.steps = 3 * 1000  # 3 epochs over the prompts at this batch size


def make(phase: str, preset: str = "tiny") -> ml_collections.ConfigDict:
    """The config of `phase` under `preset`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {PRESETS}")
    config_phase = {"sft": "sft"}.get(phase, phase)
    c = base_config(config_phase)
    c.self_judge = ml_collections.ConfigDict(dict(
        prompts_per_step=8, samples_per_prompt=2, steps=100, judge="reference"))
    c.tournament = ml_collections.ConfigDict(dict(num_candidates=(1, 2, 4, 8, 16),
                                                  num_prompts=64, split="heldout"))
    from sjjax.phases.evaluate import default_evaluate_config
    from sjjax.phases.self_samples import default_self_samples_config
    c.evaluate = default_evaluate_config()
    c.self_samples = default_self_samples_config()
    start = _common(c, preset, phase)
    if preset == "tiny":
        _tiny(c, phase, start)
    elif preset in ("smollm2", "smollm2_hh"):
        _smollm2(c, phase, start, hh=preset == "smollm2_hh")
    else:
        _paper(c, phase, start, preset)
    return c
