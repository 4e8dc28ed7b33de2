"""Every bad input a user can make ends `python -m sjjax.main` with ONE line on stderr,
`sjjax: error: <what, where, what to do>`, exit code 2 and no traceback (the table in
docs/reliability.md is these cases' actual lines). Resuming a run directory with a
changed learning rate is allowed: exit 0 and one warning line naming the key.

Each case is a subprocess of `python -m sjjax.main` with the tiny preset shrunk through
command-line overrides. To keep the file fast, failures happen before anything compiles
where the code allows it, the subprocesses share a JAX compilation cache, and two run at
a time (SJJAX_TEST_WORKERS)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.compile_flags import with_cheap_compile
from tests.conftest import ROOT

WORKERS = int(os.environ.get("SJJAX_TEST_WORKERS", "2"))
HH_GOOD = json.dumps({"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello.",
                      "rejected": "\n\nHuman: Hi there\n\nAssistant: Go away."})
TINY = ["--config.model.tiny.hidden_size=64", "--config.model.tiny.intermediate_size=128",
        "--config.model.tiny.num_layers=1", "--config.model.tiny.num_heads=4",
        "--config.model.tiny.num_kv_heads=2", "--config.model.tiny.head_dim=16"]


def _files(root) -> dict:
    """The bad (and good) inputs, written once."""
    f = {}

    def write(name, lines):
        path = os.path.join(root, name)
        with open(path, "w") as out:
            out.write("\n".join(lines) + "\n")
        f[name] = path

    write("hh_good.jsonl", [HH_GOOD] * 8)
    write("hh_bad_line3.jsonl", [HH_GOOD, HH_GOOD, '{"chosen": "\\n\\nHuman: Hi", ', HH_GOOD])
    write("pref_no_rejected.jsonl", [json.dumps({"prompt": "Q", "chosen": "A", "rejected": "B"}),
                                     json.dumps({"prompt": "Q", "chosen": "A"})])
    write("pref_empty.jsonl", [json.dumps({"prompt": "Q", "chosen": "A", "rejected": "B"}),
                               json.dumps({"prompt": "Q", "chosen": "A", "rejected": "  "})])
    # A GGUF file whose tensor data is cut off (an interrupted download).
    import gguf
    full = os.path.join(root, "full.gguf")
    writer = gguf.GGUFWriter(full, arch="llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.ones((64, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    data = open(full, "rb").read()
    f["truncated.gguf"] = os.path.join(root, "truncated.gguf")
    with open(f["truncated.gguf"], "wb") as out:
        out.write(data[:len(data) - 4000])
    # A Hugging Face directory of another architecture.
    f["gpt2"] = os.path.join(root, "gpt2")
    os.makedirs(f["gpt2"])
    with open(os.path.join(f["gpt2"], "config.json"), "w") as out:
        json.dump({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 64,
                   "n_layer": 2, "n_head": 4, "vocab_size": 100}, out)
    f["plain_file"] = os.path.join(root, "file.txt")
    with open(f["plain_file"], "w") as out:
        out.write("a regular file, not a directory\n")
    return f


def _hh(path):
    return f"--config.data.sources=({{'format': 'hh_rlhf', 'path': '{path}'}},)"


def _pref(path):
    return f"--config.data.sources=({{'format': 'preference_jsonl', 'path': '{path}'}},)"


# case id -> (config file, extra args given the files and the root, expected exit code,
#             regex the `sjjax: error:` line must match (None: no error line))
def _cases(f, root):
    run = lambda name: f"--config.run_dir={root}/runs/{name}"  # noqa: E731
    return {
        "hh_malformed_line3": ("jsft", [run("a"), _hh(f["hh_bad_line3.jsonl"])],
                               r"\S+/hh_bad_line3\.jsonl:3: malformed JSON .*on_bad_record"),
        "preference_missing_rejected": (
            "jsft", [run("b"), _pref(f["pref_no_rejected.jsonl"])],
            r"\S+/pref_no_rejected\.jsonl:2: missing field 'rejected'"),
        "empty_response": ("jsft", [run("c"), _pref(f["pref_empty.jsonl"])],
                           r"\S+/pref_empty\.jsonl:2: field 'rejected': empty response"),
        "template_without_response_b": (
            "jsft", [run("d"), "--config.judge.templates.helpfulness.user={context} "
                                "A: {response_a} Which is right?"],
            r"config\.judge\.templates\.helpfulness\.user: .*needs \{response_b\}"),
        "judge_token_of_two_tokens": (
            "jsft", [run("e"), _hh(f["hh_good.jsonl"]), "--config.judge.tokens=(' Answer-A', ' B')"],
            r"config\.judge\.tokens: ' Answer-A' is not a single token.*pick two strings"),
        "misspelt_config_key": (
            "jsft", [run("f"), "--config.train.learning_rat=1e-3"],
            r"--config\.train\.learning_rat: config\.train has no field 'learning_rat' "
            r"\(did you mean 'learning_rate'\?\)"),
        "unknown_preset": ("jsft:tinyy", [run("g")],
                           r"--config=configs/jsft\.py:tinyy: unknown preset 'tinyy'; choose "
                           r"from tiny, "),
        "truncated_gguf": ("jsft", [run("h"), f"--config.model.source={f['truncated.gguf']}",
                                    _hh(f["hh_good.jsonl"])],
                           r"\S+/truncated\.gguf: truncated GGUF file: .*Fetch the file again"),
        "unsupported_architecture": (
            "jsft", [run("i"), f"--config.model.source={f['gpt2']}", _hh(f["hh_good.jsonl"])],
            r"\S+/gpt2/config\.json: unsupported architecture: model_type='gpt2'"),
        "model_path_does_not_exist": (
            "jsft", [run("j"), f"--config.model.source={root}/no_such_model",
                     _hh(f["hh_good.jsonl"])],
            r"config\.model\.source: '\S+/no_such_model' is neither"),
        "self_judge_from_missing_jsft": (
            "self_judge", [run("k"), f"--config.model.source={root}/runs/missing/jsft"],
            r"config\.model\.source: '\S+/runs/missing/jsft' is neither"),
        "unwritable_run_dir": (
            "jsft", [f"--config.run_dir={f['plain_file']}/run", _hh(f["hh_good.jsonl"])],
            r"config\.run_dir: '\S+/file\.txt/run' is under \S+/file\.txt, which is a file, "
            r"not a directory; choose a directory"),
    }


# The resume chain: one finished tiny JSFT run, then reruns of its run dir.
RESUME = {
    "resume_with_other_width": (
        ["--config.model.tiny.hidden_size=32"], 2,
        r"config\.run_dir: \S+/runs/jsft holds a finished run of another model or data; "
        r"changed: model\.tiny\.hidden_size: 64 -> 32\. Use a new config\.run_dir, or delete"),
    "self_judge_from_unfinished_jsft": (None, 2,
                                        r"\S+/runs/unfinished: no final checkpoint "
                                        r"\(final/meta\.json\)"),
    "resume_with_changed_learning_rate": (["--config.train.learning_rate=0.002"], 0, None),
}


def _base(root):
    return ["--config.log.progress=False", "--config.log.tensorboard=False",
            f"--config.data.tfds_dir={root}/tfds", "--config.train.steps=1",
            "--config.data.batch_size=4", *TINY]


def _run(root, config, args):
    name, _, preset = config.partition(":")
    cmd = [sys.executable, "-m", "sjjax.main",
           f"--config=configs/{name}.py" + (f":{preset}" if preset else ""), *_base(root), *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
               TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
               XLA_FLAGS=with_cheap_compile(os.environ.get("XLA_FLAGS")),
               JAX_COMPILATION_CACHE_DIR=os.path.join(root, "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env.pop("SJJAX_DEBUG", None)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return dict(rc=proc.returncode, stderr=proc.stderr, stdout=proc.stdout,
                seconds=time.perf_counter() - started, cmd=cmd)


def _resume_chain(root, f, wanted):
    out = {}
    run_dir = f"{root}/runs/jsft"
    good = [f"--config.run_dir={run_dir}", _hh(f["hh_good.jsonl"]), "--config.train.steps=2",
            "--config.checkpoint.every_steps=1"]
    first = _run(root, "jsft", good)
    assert first["rc"] == 0, first["stderr"][-3000:]
    for case in wanted:
        extra, _, _ = RESUME[case]
        if extra is None:  # a JSFT run dir without final/: a copy of its model spec only
            unfinished = f"{root}/runs/unfinished"
            shutil.copytree(f"{run_dir}/model", f"{unfinished}/model")
            out[case] = _run(root, "self_judge", [f"--config.run_dir={root}/runs/sj",
                                                  f"--config.model.source={unfinished}"])
        else:
            out[case] = _run(root, "jsft", good + extra)
    return out


def _selected(request) -> list:
    """The cases the selected tests of this module need (so that `-k` runs only those)."""
    items = [i for i in request.session.items if i.module.__name__ == __name__]
    out = []
    for item in items:
        if hasattr(item, "callspec") and "case" in item.callspec.params:
            out.append(item.callspec.params["case"])
        out += NEEDS.get(item.originalname, [])
    return list(dict.fromkeys(out))


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    """Runs every selected case (two at a time); case id -> its subprocess result."""
    root = str(tmp_path_factory.mktemp("cli_errors"))
    f = _files(root)
    cases = _cases(f, root)
    singles = [c for c in _selected(request) if c in cases]
    chain = [c for c in _selected(request) if c in RESUME]
    results = {}
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {}
        if chain:
            futures[pool.submit(_resume_chain, root, f, chain)] = None
        for case in singles:
            config, args, _ = cases[case]
            futures[pool.submit(_run, root, config, args)] = case
        for future in concurrent.futures.as_completed(futures):
            case = futures[future]
            if case is None:
                results.update(future.result())
            else:
                results[case] = future.result()
    results["_wall_s"] = time.perf_counter() - started
    results["_regex"] = {c: cases[c][2] for c in cases} | {c: RESUME[c][2] for c in RESUME}
    results["_rc"] = {c: 2 for c in cases} | {c: RESUME[c][1] for c in RESUME}
    return results


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "sjjax: error:" in line]


ALL_CASES = ["hh_malformed_line3", "preference_missing_rejected", "empty_response",
             "template_without_response_b", "judge_token_of_two_tokens", "misspelt_config_key",
             "unknown_preset", "truncated_gguf", "unsupported_architecture",
             "model_path_does_not_exist", "self_judge_from_missing_jsft", "unwritable_run_dir",
             *RESUME]


@pytest.mark.parametrize("case", ALL_CASES)
def test_bad_input_is_one_line_and_exit_2(outcomes, case):
    result = outcomes[case]
    stderr = result["stderr"]
    context = f"{' '.join(result['cmd'][3:])}\n--- stderr:\n{stderr[-4000:]}"
    assert result["rc"] == outcomes["_rc"][case], context
    assert "Traceback" not in stderr, context
    lines = _error_lines(stderr)
    regex = outcomes["_regex"][case]
    if regex is None:
        assert lines == [], context
    else:
        assert len(lines) == 1, context
        line = lines[0][lines[0].index("sjjax: error:"):]  # after any progress-bar residue
        assert re.fullmatch(r"sjjax: error: .+", line), line
        assert re.search(regex, line), f"{regex!r} not in {line!r}"
    print(f"{case}: rc={result['rc']} {result['seconds']:.1f}s "
          f"{lines[0] if lines else '(no error)'}")


def test_changed_learning_rate_is_one_warning_and_applied(outcomes):
    """The documented drift rule: a changed hyperparameter is logged (one warning line
    per key) and applied, and the run finishes (exit 0)."""
    result = outcomes["resume_with_changed_learning_rate"]
    warnings = [l for l in result["stderr"].splitlines() if "config changed since" in l]
    assert len(warnings) == 1, result["stderr"][-3000:]
    assert re.search(r"WARNING config changed since \S+/runs/jsft was saved \(step 2\): "
                     r"train\.learning_rate: 0\.001 -> 0\.002; applied from step 2",
                     warnings[0]), warnings
    assert "[jsft] steps=2" in result["stdout"]



NEEDS = {"test_changed_learning_rate_is_one_warning_and_applied":
         ["resume_with_changed_learning_rate"]}


def test_restore_of_another_model_names_run_dir_and_parameter(tmp_path):
    """The restore's own check (a run dir without a config.json to compare, e.g. one
    written by an older sjjax): another width is a RunDirError naming the run dir, the
    parameter and both shapes, before Orbax reads anything."""
    import jax
    import jax.numpy as jnp

    from sjjax.checkpoint import RunCheckpointer, abstract_like
    from sjjax.errors import RunDirError
    from sjjax.train.steps import TrainState

    def state(width):
        params = {"embedder": jnp.zeros((11, width)), "layers": {"w": jnp.zeros((2, width))}}
        return TrainState(params, ({"mu": params},), jnp.int32(3), jnp.zeros(2, jnp.uint32))

    run_dir = str(tmp_path / "run")
    saver = RunCheckpointer(run_dir)
    saver.save(3, state(8), {"phase": "jsft"})
    saver.close()
    reader = RunCheckpointer(run_dir)  # a fresh process's view
    restored, _ = reader.restore(3, abstract_like(state(8)))
    assert jax.tree.structure(restored) == jax.tree.structure(state(8))
    with pytest.raises(RunDirError, match=r"config\.run_dir: \S+/run/checkpoints/3 was saved "
                                          r"by another model: trainable/embedder has shape "
                                          r"\(11, 8\) there but \(11, 4\) under this config"):
        reader.restore(3, abstract_like(state(4)))
    bigger = state(8)._replace(trainable={**state(8).trainable, "extra": jnp.zeros(1)})
    with pytest.raises(RunDirError, match=r"1 arrays of this config are not in it.*extra"):
        reader.restore(3, abstract_like(bigger))


def test_config_drift_rules():
    from sjjax.checkpoint import config_drift
    saved = {"phase": "jsft", "run_dir": "runs/x", "model": {"dtype": "float32",
             "tiny": {"hidden_size": 64}}, "data": {"batch_size": 4, "tfds_dir": "a"},
             "train": {"learning_rate": 1e-3, "steps": 2}, "judge": {"tokens": [" A", " B"],
                                                                    "batch_size": 8}}
    now = json.loads(json.dumps(saved))
    now["run_dir"] = "/abs/runs/x"                   # ignored
    now["model"]["dtype"] = "bfloat16"               # applied (compute dtype)
    now["data"]["tfds_dir"] = "b"                    # applied (where, not what)
    now["train"]["learning_rate"] = 2e-3             # applied
    now["judge"]["batch_size"] = 16                  # applied
    assert config_drift(saved, now)[0] == []
    assert [k for k, _, _ in config_drift(saved, now)[1]] == [
        "data.tfds_dir", "judge.batch_size", "model.dtype", "train.learning_rate"]
    now["model"]["tiny"]["hidden_size"] = 32         # refused
    now["data"]["batch_size"] = 8                    # refused
    now["judge"]["tokens"] = [" X", " Y"]            # refused (the judge data)
    assert [k for k, _, _ in config_drift(saved, now)[0]] == [
        "data.batch_size", "judge.tokens", "model.tiny.hidden_size"]
