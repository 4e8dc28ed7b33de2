"""The config schema shared by every phase (every knob, with its default), and the
checks of its generic keys.

`base_config(phase)` is the whole schema; a preset (`sjjax.presets`) starts from it and
changes what it needs, and the command line overrides any field
(`--config.train.learning_rate=1e-5`). `validate` checks the keys every phase shares and
names the offending one; `sjjax.phases.validate_phase_config` adds the phase's own checks
(both run before anything is compiled). This module imports no phase.
"""

from __future__ import annotations

import json

import ml_collections
from ml_collections import config_dict

from sjjax import sharding
from sjjax.data import readers
from sjjax.data.batching import DEFAULT_BUCKETS
from sjjax.data.templates import default_judge_templates, validate_judge_templates
from sjjax.errors import ConfigError  # noqa: F401  (re-exported)
from sjjax.model.config import ATTENTION_IMPLEMENTATIONS


def base_config(phase: str) -> ml_collections.ConfigDict:
    """Every field any phase reads, at its default."""
    c = ml_collections.ConfigDict()
    c.phase = phase                  # a name in sjjax.phases.PHASES
    c.run_dir = f"runs/{phase}"      # checkpoints, metrics and the resolved config.json
    c.seed = 0                       # model init, sampling, prompt order (data: data.seed)

    # ---------------------------------------------------------------- model
    c.model = ml_collections.ConfigDict(dict(
        # "smollm2" (the fetched asset), "tiny" (from scratch), a HF dir, a .gguf file,
        # or an sjjax checkpoint directory (a previous phase's run_dir).
        source="smollm2",
        dtype="float32",             # compute dtype: bfloat16 on accelerators
        param_dtype="float32",       # stored parameters (and optimizer state)
        remat="none",                # activation rematerialisation: none | full | dots
        # auto (cuDNN flash on GPU, splash on a one-device TPU, else XLA) | xla | cudnn |
        # splash: see sjjax.model.attention
        attention="auto",
        # Jinja chat template replacing the tokenizer's ("" = the tokenizer's own): for a
        # base model without one (Llama-2-7B), e.g. sjjax.presets.paper.OFFICIAL_CHAT_TEMPLATE
        chat_template="",
        # BOS before every prompt and example: never | tokenizer (as the tokenizer's own
        # add_special_tokens does, e.g. Llama-2's add_bos_token: the official code's encode)
        add_bos="never",
        # The architecture of model.source="tiny" (trained from scratch).
        tiny=ml_collections.ConfigDict(dict(
            hidden_size=256, intermediate_size=768, num_layers=4, num_heads=8,
            num_kv_heads=4, head_dim=32, max_position_embeddings=512,
            tie_word_embeddings=True, rope_theta=10000.0,
            vocab_size=1024,         # of the BPE tokenizer trained on the synthetic suite
            tokenizer_seed=0,        # its training corpus
            numbers="digits")),      # digits | pairs (1-2 digit numbers one token each)
    ))

    # ---------------------------------------------------------------- LoRA
    c.lora = ml_collections.ConfigDict(dict(
        enabled=False,               # train adapters only; the reference is adapters off
        rank=8,                      # r
        alpha=16.0,                  # scale alpha / r
        targets=("q_proj", "v_proj"),  # projections that get adapters
    ))

    # ---------------------------------------------------------------- mesh
    c.mesh = ml_collections.ConfigDict(dict(
        shape=(-1, 1, 1),            # devices per axis; one -1 takes the rest
        axes=sharding.MESH_AXES,     # (data, fsdp, tensor)
        rules=tuple((k, v) for k, v in sharding.DEFAULT_RULES),  # logical axis -> mesh axes
    ))

    # ---------------------------------------------------------------- judge
    c.judge = ml_collections.ConfigDict(dict(
        tokens=(" A", " B"),         # the two decision tokens (first, second response)
        # principle -> {system, user, assistant_prefix[, rationale]} (sjjax.data.templates)
        templates=default_judge_templates(),
        principles=("helpfulness",),  # which templates are used (majority vote across)
        batch_size=8,                # judge prompts per forward pass
        max_length=1024,             # online judge prompts: context, then responses, trimmed
        check_tokens=64,             # the longest check a check template's judge writes
        # The verdict (sjjax.judge.JudgeRules; the official code: full_softmax, share, b)
        score="pair_softmax",        # pair_softmax (2-way per order) | full_softmax (vocab)
        principle_vote="abstain",    # abstain (tied principle abstains) | share (> 1/2 won)
        tie_break="a",               # a | b: who wins equal mean scores
    ))

    # ---------------------------------------------------------------- sampling
    c.sampling = ml_collections.ConfigDict(dict(
        max_new_tokens=128,          # per response
        temperature=1.0,
        top_p=0.9,                   # nucleus; 1 = off
        top_k=0,                     # 0 = off
        greedy=False,                # argmax instead of sampling
        prompt_bucket=32,            # prompts are left-padded to a multiple of this
        batch_size=8,                # prompts per sampler call
    ))

    # ---------------------------------------------------------------- data
    c.data = ml_collections.ConfigDict(dict(
        # ({"format": "hh_rlhf" | "ultrafeedback" | "preference_jsonl" | "alpaca_eval" |
        #   "synthetic", "path": ..., plus that reader's options (readers.read_source)}, ...)
        sources=(),
        on_bad_record="raise",       # raise | skip (skips are counted and logged)
        max_length=2048,             # tokens per example (targets are never cut)
        sft_per_judge=config_dict.placeholder(float),  # SFT examples per judgment example
        buckets=DEFAULT_BUCKETS,     # padded lengths; max_length <= buckets[-1]
        batch_size=8,                # global: rows (JSFT) or pairs (DPO)
        seed=0,                      # shuffling and mixing
        num_epochs=config_dict.FieldReference(1, field_type=int),  # None = endless
        drop_remainder=False,        # False: an epoch's partial batches are padded
        tfds_dir="runs/tfds",        # where the prepared TFDS datasets are written
        num_threads=2,               # prefetch threads
        prefetch=4,                  # batches prefetched
        length_bucket=32,            # padding multiple for sampled sequences (self-judge)
        # JSFT judgment target: decision token (+ rationale) then end-of-turn (True), or
        # without the end-of-turn (False: the official code's, decision token only)
        judge_target_eos=True,
        # False: batches group examples of one length bucket; True: random batches over
        # all examples (the official code's), each padded to the bucket of its longest row
        mix_batches=False,
    ))

    # ---------------------------------------------------------------- training
    c.train = ml_collections.ConfigDict(dict(
        steps=0,                     # 0 = one pass as given by data.num_epochs
        learning_rate=2e-5,          # peak
        schedule="cosine",           # cosine | linear (to 0) | constant, after warmup
        warmup_ratio=0.03,           # of the total steps
        warmup_steps=0,              # > 0: overrides warmup_ratio
        weight_decay=0.0,            # AdamW, on matrices only (not norms, biases)
        freeze_embeddings=False,     # token embeddings (= the output layer when tied) fixed
        freeze_layers=0,             # decoder layers 0 .. K-1 fixed (full fine-tuning)
        max_grad_norm=1.0,           # global-norm clipping; 0 = off
        adam_b1=0.9,
        adam_b2=0.999,
        adam_eps=1e-8,
        grad_accum=1,                # micro-batches per optimizer step
        loss_normalization="token",  # token | example
        judge_loss_weight=1.0,       # judgment examples count this many times in the JSFT loss
        # Sequence positions per chunk of the JSFT/DPO loss's logits (0 = unchunked): the
        # [b, T, V] float32 logits are never held whole; same values and gradients.
        loss_chunk=512,
    ))
    c.dpo = ml_collections.ConfigDict(dict(
        beta=0.1,                    # strength of the KL-like regulariser
        loss_type="sigmoid",         # sigmoid (DPO) | hinge | ipo
        label_smoothing=0.0,         # conservative DPO (sigmoid loss)
        # alpha >= 0: add alpha x the chosen response's per-token NLL to each pair's loss
        # (RPO, Pang et al. 2024; TRL's rpo_alpha). 0 = the paper's plain DPO.
        nll_weight=0.0,
    ))

    # ---------------------------------------------------------------- self-judge phase
    c.self_judge = ml_collections.ConfigDict(dict(
        prompts_per_step=8,          # prompts sampled and judged per optimizer step
        # responses per prompt, an even N >= 2: samples (0, 1), (2, 3), ... are judged
        # as N / 2 pairs, each a DPO pair (2: the paper's one pair per prompt)
        samples_per_prompt=2,
        # append the end-of-sequence token to responses cut at sampling.max_new_tokens in
        # the DPO rows (the official code appends it to every response)
        eos_on_truncated=False,
        steps=100,                   # optimizer steps
        # reference (the frozen JM, the paper's) | policy | the controls (synthetic suite
        # only): oracle (the task oracle labels the pair; pairs both right or both wrong
        # carry no preference and stay out of the loss) | oracle_noisy (its verdict
        # flipped with probability oracle_flip, seeded per step)
        judge="reference",
        oracle_flip=0.0,             # p of judge=oracle_noisy
    ))

    # ---------------------------------------------------------------- JSFT judge data
    # from the model's own samples (sjjax.phases.self_samples; beyond the paper)
    c.self_samples = ml_collections.ConfigDict(dict(
        enabled=False,
        model="",                    # run dir of the model sampled (e.g. the SFT baseline)
        num_prompts=2048,            # training prompts sampled
        samples_per_prompt=8,
        temperature=1.0,
        top_p=0.9,
        rationales=False,            # each pair carries the responses' checks (JM-PR)
        restate=False,               # ... each copying the question's numbers first
                                     # (True), or stating the question's answer ("answer")
    ))

    # ---------------------------------------------------------------- tournament phase
    c.tournament = ml_collections.ConfigDict(dict(
        num_candidates=(1, 2, 4, 8, 16),  # the N swept
        num_prompts=64,              # prompts per N
        split="heldout",             # train | heldout | all
    ))

    # ---------------------------------------------------------------- evaluate phase
    c.evaluate = ml_collections.ConfigDict(dict(
        judge_source="",             # "" = the evaluated model judges (self-judgment)
        num_prompts=128,             # held-out prompts for oracle accuracy
        samples_per_prompt=4,        # also sampled replies per prompt (config.sampling); 0 = none
        num_pairs=256,               # held-out labelled pairs for judge accuracy
        tournament_sizes=(1, 2, 4, 8, 16),  # N of the tournament sweep; () = none
        tournament_prompts=64,       # prompts of the tournament sweep
        win_rate_references="",      # AlpacaEval JSON (instruction, output) or ""
        win_rate_items=32,           # references compared against
        label="",                    # name of this model in reports (default: its run dir)
        shortcut_proof=True,         # synthetic: also judge the shortcut-proof held-out pairs
    ))

    # ---------------------------------------------------------------- generate phase
    c.generate = ml_collections.ConfigDict(dict(
        system="",                   # system message ("" = none)
        prompts=(),                  # user messages answered in turn
        interactive=False,           # then read more from stdin
    ))

    # ---------------------------------------------------------------- checkpoints, logs
    c.checkpoint = ml_collections.ConfigDict(dict(
        every_steps=50,              # save period (and at the end)
        keep=2,                      # checkpoints kept
        export_hf=False,             # also write HF safetensors at the end
    ))
    c.log = ml_collections.ConfigDict(dict(
        # metrics period: a row is the mean over the steps since the last one. A
        # self-judge step (sample, judge, update) is slow and noisy: a row each.
        every_steps=1 if phase == "self_judge" else 10,
        tensorboard=True,            # also write TensorBoard events
        progress=True,               # a progress bar on the terminal
    ))
    return c


def default_data_config() -> ml_collections.ConfigDict:
    """`config.data` alone, at its defaults (the section of `base_config`)."""
    return base_config("jsft").data


_DTYPES = ("float32", "bfloat16", "float16")


def _require(cond: bool, key: str, message: str):
    if not cond:
        raise ConfigError(f"config.{key}: {message}")


def validate(c: ml_collections.ConfigDict) -> None:
    """Checks the keys every phase shares (values and cross-field constraints); raises
    ConfigError naming the key. The phase's own checks: sjjax.phases.validate_phase_config."""
    _require(isinstance(c.get("phase"), str), "phase", "missing")
    _require(bool(c.get("run_dir")), "run_dir", "must be a directory path")
    if "model" in c:
        _require(c.model.dtype in _DTYPES, "model.dtype", f"{c.model.dtype!r} not in {_DTYPES}")
        _require(c.model.param_dtype in _DTYPES, "model.param_dtype",
                 f"{c.model.param_dtype!r} not in {_DTYPES}")
        _require(c.model.remat in ("none", "full", "dots"), "model.remat",
                 f"{c.model.remat!r} not in (none, full, dots)")
        _require(c.model.get("attention", "auto") in ATTENTION_IMPLEMENTATIONS,
                 "model.attention", f"{c.model.get('attention')!r} not in "
                 f"{ATTENTION_IMPLEMENTATIONS}")
        _require(bool(c.model.source), "model.source", "empty")
        _require(c.model.get("add_bos", "never") in ("never", "tokenizer"), "model.add_bos",
                 f"{c.model.get('add_bos')!r} not in (never, tokenizer)")
        _require(isinstance(c.model.get("chat_template", ""), str), "model.chat_template",
                 "must be a string (a Jinja chat template, or '' for the tokenizer's)")
    if "lora" in c and c.lora.enabled:
        _require(c.lora.rank > 0, "lora.rank", "must be > 0")
        from sjjax.model.transformer import PROJECTION_AXES
        bad = [t for t in c.lora.targets if t not in PROJECTION_AXES or t == "lm_head"]
        _require(not bad, "lora.targets", f"unknown projections {bad}")
    if "train" in c:
        chunk = c.train.loss_chunk
        _require(isinstance(chunk, int) and chunk >= 0, "train.loss_chunk",
                 f"{chunk!r}: must be an int >= 0 (0 = unchunked)")
        frozen = c.train.get("freeze_layers", 0)
        _require(isinstance(frozen, int) and frozen >= 0, "train.freeze_layers",
                 f"{frozen!r}: must be an int >= 0 (the first K decoder layers)")
        _require(isinstance(c.train.get("freeze_embeddings", False), bool),
                 "train.freeze_embeddings", "must be True or False")
    if "dpo" in c:
        alpha = c.dpo.get("nll_weight", 0.0)
        _require(isinstance(alpha, (int, float)) and alpha >= 0, "dpo.nll_weight",
                 f"{alpha!r}: must be a number >= 0 (0 = plain DPO)")
    if "mesh" in c:
        _require(len(c.mesh.shape) == len(c.mesh.axes), "mesh.shape",
                 f"{tuple(c.mesh.shape)} does not match axes {tuple(c.mesh.axes)}")
        _require(list(c.mesh.shape).count(-1) <= 1, "mesh.shape", "at most one -1")
    if "sampling" in c:
        s = c.sampling
        _require(s.max_new_tokens > 0, "sampling.max_new_tokens", "must be > 0")
        _require(s.greedy or s.temperature > 0, "sampling.temperature", "must be > 0")
        _require(0 < s.top_p <= 1, "sampling.top_p", "must be in (0, 1]")
        _require(s.top_k >= 0, "sampling.top_k", "must be >= 0")
    if "judge" in c:
        _require(len(c.judge.tokens) == 2 and c.judge.tokens[0] != c.judge.tokens[1],
                 "judge.tokens", "needs two distinct strings")
        validate_judge_templates(c.judge.templates, c.judge.principles)
        from sjjax.judge import JudgeRules
        JudgeRules.from_config(c.judge)  # raises naming config.judge.<rule>


def validate_data_config(data, need_sources: bool = True) -> None:
    """Checks `config.data` (the data phases and `sjjax.data.datasets.prepare` call it);
    raises ConfigError naming the config.data key."""
    def require(cond, key, message):
        if not cond:
            raise ConfigError(f"config.data.{key}: {message}")
    require(data.on_bad_record in readers.ON_BAD_RECORD, "on_bad_record",
            f"{data.on_bad_record!r} is not one of {readers.ON_BAD_RECORD}")
    require(not need_sources or len(data.sources) > 0, "sources", "no data source given")
    formats = sorted(readers.READERS) + ["synthetic"]
    for i, spec in enumerate(data.sources):
        require(isinstance(spec, dict) and spec.get("format") in formats,
                f"sources[{i}].format", f"must be one of {formats}")
        require(spec.get("format") == "synthetic" or bool(spec.get("path")),
                f"sources[{i}].path", "missing")
    buckets = tuple(data.buckets)
    require(len(buckets) > 0 and all(b > 0 for b in buckets)
            and all(a < b for a, b in zip(buckets, buckets[1:])), "buckets",
            f"{buckets} must be increasing positive lengths")
    require(0 < data.max_length <= buckets[-1], "max_length",
            f"{data.max_length} must be in (0, largest bucket {buckets[-1]}]")
    require(data.batch_size > 0, "batch_size", "must be > 0")
    require(data.sft_per_judge is None or data.sft_per_judge >= 0, "sft_per_judge",
            "must be >= 0 (or None: keep all examples)")
    require(data.num_epochs is None or data.num_epochs > 0, "num_epochs",
            "must be > 0 (or None: endless)")
    for key in ("judge_target_eos", "mix_batches"):
        require(isinstance(data.get(key, False), bool), key, "must be True or False")


def save_resolved(c: ml_collections.ConfigDict, directory: str) -> str:
    """Writes the resolved config as JSON next to a checkpoint; returns the path."""
    from sjjax import fs
    path = fs.join(directory, "config.json")
    fs.write_text(path, c.to_json_best_effort(indent=2, sort_keys=True))
    return path


def load_resolved(directory: str) -> ml_collections.ConfigDict:
    from sjjax import fs
    return ml_collections.ConfigDict(json.loads(fs.read_text(fs.join(directory, "config.json"))))
