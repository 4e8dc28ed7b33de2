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
           "jsft_own_errors": [None, "none", "runs/tiny/sft"],
           "generate": [None]}


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


def test_config_schema_imports_no_phase():
    import subprocess
    import sys
    code = "import sys, sjjax.config; assert 'sjjax.phases' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
