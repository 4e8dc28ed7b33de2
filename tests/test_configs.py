"""Every config file under configs/ loads with each argument it documents and passes the
validation `python -m sjjax.main` runs before compiling anything, so a broken config
file fails here rather than minutes into a run."""

from __future__ import annotations

import glob
import importlib.util
import os

import pytest

from sjjax import presets
from sjjax.phases import PHASE_NAMES, pipeline, validate_phase_config

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
PHASE_FILES = ("sft", "jsft", "dpo", "self_judge", "tournament", "evaluate")
# The arguments of the config files that take something other than a preset (None: no
# argument).
SPECIAL = {"pod": ["llama2_7b,jsft,v4-32", "mistral_7b,self_judge,v5litepod-64,lora",
                   "llama3_8b,dpo,v5p-16,full"],
           "jsft_judge_fit": ["4", "2"],
           "jsft_own_errors": [None, "none", "runs/tiny/sft", "runs/tiny/sft,no_labelled",
                               "runs/tiny/sft,no_labelled,rationales",
                               "runs/tiny/sft,check,no_restate,membership"],
           "generate": [None],
           "skill_sft": [None, "sort,100"],
           "smollm2_judge_recipe": [None, "full", "eos", "example", "lr4x", "grouped", "optimizer",
                                    "preset", "check", "solve", "prototype,evaluate", "preset,evaluate",
                                    "check,evaluate", "solve,evaluate"],
           "judge_pairs": ["pairs.jsonl", "pairs.jsonl,smollm2"]}


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"configs_{name}",
                                                  os.path.join(CONFIGS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cases():
    names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(CONFIGS, "*.py")))
    for name in names:
        if name in SPECIAL:
            args = SPECIAL[name]
        elif name in PHASE_FILES or name == "pipeline":
            args = list(presets.PRESETS)
        else:
            raise AssertionError(f"configs/{name}.py: add its arguments to SPECIAL in {__file__}")
        for arg in args:
            yield pytest.param(name, arg, id=f"{name}:{arg}")


@pytest.mark.parametrize("name,arg", list(cases()))
def test_config_file_loads_and_validates(name, arg):
    module = load(name)
    config = module.get_config() if arg is None else module.get_config(arg)
    if name == "pipeline":
        pipeline.validate(config)  # validates every phase the pipeline would run
        assert pipeline.plan(config), "the pipeline plans no phase"
    else:
        validate_phase_config(config)
        assert config.phase in PHASE_NAMES


def test_judge_pairs_config_judges_every_pair_of_the_file(tmp_path):
    """configs/judge_pairs.py on a hand-made file: every pair is judged (none held back
    by the split), and the question-blind baselines are those of the hand-made pairs:
    the chosen answer is the question's number, the rejected one is not."""
    import json

    from sjjax.phases import run_phase
    from tests.phases.tiny_config import apply_overrides
    path = tmp_path / "pairs.jsonl"
    with open(path, "w") as f:
        for i in range(12):
            a, b = 10 + i, 50 + i
            f.write(json.dumps({
                "prompt": [{"role": "user", "content": f"Which is larger, {a} or {b}?"}],
                "chosen": [{"role": "assistant", "content": f"The answer is {b}."}],
                "rejected": [{"role": "assistant", "content": f"The answer is {b + 7}."}]}) + "\n")
    config = load("judge_pairs").get_config(str(path))
    config.model.source = "tiny"
    config.run_dir = str(tmp_path / "out")
    apply_overrides(config, {"model.tiny.hidden_size": 32, "model.tiny.intermediate_size": 64,
                             "model.tiny.num_layers": 1, "model.tiny.num_heads": 2,
                             "model.tiny.num_kv_heads": 1, "model.tiny.head_dim": 16})
    result = run_phase(config)["judge"]
    assert result["n"] == 12 and 0 <= result["accuracy"] <= 1
    assert result["baselines"]["reuses_question_numbers"] == 1.0
    assert result["baselines"]["larger_number"] == 0.0  # the rejected number is larger
    assert "greedy" not in json.load(open(tmp_path / "out" / "eval.json"))


def test_judge_fit_config_builds_its_pairs():
    config = load("jsft_judge_fit").get_config("3")
    (source,) = config.data.sources
    assert source["n_pairs"] == 3 and source["n_sft"] == 1
    assert config.train.loss_normalization == "example"


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_every_phase_of_every_preset_builds(preset):
    for phase in PHASE_NAMES:
        if phase != "pipeline":
            config = presets.make(phase, preset)
            assert config.phase == phase and config.run_dir.endswith(phase)


def test_unknown_preset_is_one_line_listing_the_presets():
    with pytest.raises(ValueError) as e:
        presets.make("jsft", "llama9")
    assert "\n" not in str(e.value) and all(p in str(e.value) for p in presets.PRESETS)


def test_own_errors_recipe_without_labelled_pairs():
    """",no_labelled" keeps the preset's SFT data and its shortcut-proof and own-sample
    judge data, and drops only the labelled pairs; an unknown option is one line."""
    module = load("jsft_own_errors")
    full, lean = module.get_config("runs/tiny/sft"), module.get_config("runs/tiny/sft,no_labelled")
    assert [s["n_pairs"] for s in full.data.sources] == [1000, 1000]
    assert [s["n_pairs"] for s in lean.data.sources] == [0, 1000]
    assert lean.data.sources[0]["n_sft"] == full.data.sources[0]["n_sft"] > 0
    assert lean.data.sources[1]["pairs"] == "shortcut_proof" and lean.self_samples.enabled
    assert lean.run_dir != full.run_dir
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['x'\]"):
        module.get_config("runs/tiny/sft,x")


def test_own_errors_recipe_with_membership_sft():
    """",membership" adds SFT conversations of the membership family only (no judgments,
    no prompts: what the policy answers and is judged on is unchanged), with near-miss
    absent queries."""
    from sjjax.data.sources import read_source
    module = load("jsft_own_errors")
    base = module.get_config("none,check,no_restate")
    config = module.get_config("none,check,no_restate,membership")
    added = config.data.sources[-1]
    assert list(config.data.sources[:-1]) == list(base.data.sources)
    assert added["families"] == ("membership",) and added["n_pairs"] == added["n_prompts"] == 0
    read = read_source(added)
    assert len(read.conversations) == 12000 and not read.judgments and not read.prompts
    asks = [c.messages[0]["content"] for c in read.conversations]
    assert all("in the list" in a or "contain" in a for a in asks)
    assert config.run_dir.endswith("_membership")


def test_skill_sft_is_one_family_and_names_a_wrong_one():
    from sjjax.errors import ConfigError
    module = load("skill_sft")
    config = module.get_config("sort,100")
    (source,) = config.data.sources
    assert source["families"] == ("sort",) and source["n_sft"] == 100
    assert config.model.source == "tiny" and config.run_dir.endswith("skill_sort")
    with pytest.raises(ConfigError, match="unknown family 'sorting'"):
        module.get_config("sorting")


def test_smollm2_judge_recipe_variants_change_one_thing_each():
    """The prototype's recipe, then each variant differs from it in its own keys only,
    and `preset` in the smollm2 preset's values for all of them; the evaluation reads
    the variant's run on the same tasks."""
    from sjjax.errors import ConfigError
    module = load("smollm2_judge_recipe")
    keys = ("train.freeze_embeddings", "train.freeze_layers", "train.adam_b2",
            "train.weight_decay", "train.warmup_steps", "train.warmup_ratio", "train.schedule",
            "train.loss_normalization", "data.judge_target_eos", "data.mix_batches",
            "train.learning_rate")

    def values(config):
        return {k: config[k.split(".")[0]][k.split(".")[1]] for k in keys}

    prototype = values(module.get_config("prototype"))
    assert prototype["train.freeze_layers"] == 8 and prototype["train.freeze_embeddings"]
    assert not prototype["data.judge_target_eos"] and prototype["data.mix_batches"]
    jsft = values(presets.make("jsft", "smollm2"))
    for variant, change in module.VARIANTS.items():
        got = values(module.get_config(variant))
        assert {k for k in keys if got[k] != prototype[k]} == set(change), variant
    preset = values(module.get_config("preset"))
    assert all(preset[k] == jsft[k] for k in module.VARIANTS["preset"])
    assert preset["train.loss_normalization"] == jsft["train.loss_normalization"] == "token"
    (source,) = module.get_config("eos").data.sources
    assert source["n_sft"] * 10 == 800 and source["n_pairs"] * 10 * 2 == 1200
    evaluation = module.get_config("eos,evaluate")
    assert evaluation.model.source == "runs/smollm2_recipe/eos"
    assert evaluation.data.sources == (source,) and evaluation.phase == "evaluate"
    with pytest.raises(ConfigError, match="expected <variant>"):
        module.get_config("frozen")


def test_smollm2_judge_recipe_check_variant_changes_the_template_and_data_only():
    """`check`: the prototype's training settings; the judge writes both checks before
    "Answer:" (no rationale after it), in training and in its evaluation, and every
    judgment of the data carries both responses' checks."""
    from sjjax.data.sources import read_source
    module = load("smollm2_judge_recipe")
    prototype, check = module.get_config("prototype"), module.get_config("check")
    assert check.train.to_dict() == prototype.train.to_dict()
    for config in (check, module.get_config("check,evaluate")):
        (template,) = config.judge.templates.values()
        assert template["check"] == "A: {rationale_a}\nB: {rationale_b}\n"
        assert not template.get("rationale")
        assert config.data.sources[0]["rationales"] and config.data.sources[0]["restate"]
    assert "check" not in prototype.judge.templates["helpfulness"]
    read = read_source(check.data.sources[0])
    assert read.judgments and all(j.rationale_chosen and j.rationale_rejected
                                  for j in read.judgments)


def test_own_errors_recipe_with_rationales():
    """",rationales": every judgment source and the own-sample pairs carry the checks, the
    judge template has the rationale placeholders, and no judgment loses its question
    to the length limit (max_length holds the longest rationale target)."""
    from sjjax.data.sources import read_source
    from sjjax.data.templates import JudgePromptBuilder
    from sjjax.data.tiny_tokenizer import build_tiny_tokenizer
    config = load("jsft_own_errors").get_config("none,rationales")
    assert all(s["rationales"] for s in config.data.sources)
    assert config.self_samples.rationales
    judge = JudgePromptBuilder.from_config(build_tiny_tokenizer(), config.judge)
    longest = 0
    for source in config.data.sources:
        for j in read_source(source, wanted=("judgments",)).judgments:
            assert j.rationale_chosen and j.rationale_rejected
            encoded, _ = judge.training_example(j.principle, j.context, j.chosen, j.rejected,
                                                True, j.rationale_chosen, j.rationale_rejected)
            longest = max(longest, len(encoded))
    assert 160 < longest <= config.data.max_length


def test_config_schema_imports_no_phase():
    import subprocess
    import sys
    code = "import sys, sjjax.config; assert 'sjjax.phases' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_negative_nll_weight_names_the_key():
    from sjjax.config import ConfigError, validate
    config = presets.make("self_judge", "tiny")
    config.dpo.nll_weight = -0.5
    with pytest.raises(ConfigError, match=r"config\.dpo\.nll_weight"):
        validate(config)


def test_pipeline_oracle_control_reruns_iteration_one_with_the_oracle_judge():
    config = load("pipeline").get_config("tiny")
    assert not any(name == "self_judge_oracle" for name, _ in pipeline.plan(config))
    config.oracle_control = True
    pipeline.validate(config)
    plan = dict(pipeline.plan(config))
    control, first = plan["self_judge_oracle"], plan["self_judge_1"]
    assert control.self_judge.judge == "oracle" and first.self_judge.judge != "oracle"
    # the same start, seed and settings as iteration 1: a paired comparison
    assert control.model.source == first.model.source == config.root + "/jsft"
    assert control.seed == first.seed
    assert control.train.learning_rate == first.train.learning_rate
    assert control.self_judge.steps == first.self_judge.steps
    # evaluated, and the N-sweep stays on JSFT and the last iteration
    assert plan["eval_self_judge_oracle"].evaluate.tournament_sizes == ()
    assert plan["eval_self_judge_2"].evaluate.tournament_sizes == tuple(config.tournament_sizes)
