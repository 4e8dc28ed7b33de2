"""Why SmolLM2-135M's judge stays at ln 2: the issue's PyTorch prototype recipe, which
did learn to judge on this CPU, run in sjjax, then changed one variable at a time toward
the smollm2 preset's JSFT (docs/results.md, "SmolLM2's judge, one variable at a time").

    python -m sjjax.main --config=configs/smollm2_judge_recipe.py:<variant>
    python -m sjjax.main --config=configs/smollm2_judge_recipe.py:<variant>,evaluate

`prototype`: embeddings (tied: also the output layer) and layers 0-7 frozen; AdamW lr
5e-5, beta2 0.95, weight decay 0.01 (PyTorch's default), 15 warm-up steps then linear
decay; the judgment's target is the decision token alone (no end-of-turn); per-token mean
loss over randomly mixed batches of 8; 800 SFT conversations and 600 labelled pairs in
both orders (1,200 judgment examples) over arithmetic, compare, count, sort and minmax
at levels 1-2 (the prototype's add / larger / count / sort / reverse, as the suite has
them), one epoch (250 steps).

Each other variant changes one thing, to what the smollm2 preset does unless said:
  full       nothing frozen (full fine-tuning, tied embeddings trained)
  eos        the judgment target ends with end-of-turn
  example    per-example loss normalisation (the tiny preset's; smollm2's is per token)
  lr4x       lr 2e-4 (both recipes use 5e-5: is the judge merely slow?)
  grouped    batches grouped by length bucket instead of mixed
  optimizer  the preset's AdamW schedule: beta2 0.999, no weight decay, 3% warm-up,
             cosine decay
  preset     full + eos + grouped + optimizer: the smollm2 preset's JSFT on this data
  check      the template: the judge writes its check of each response before deciding
             ("A: The question has 41, 16, 91, 19, 95. 95 is in the question and the
             largest.\nB: ...\nAnswer: A"; the tiny_check preset's judge on SmolLM2's
             template), trained on the checks of the synthetic pairs
  solve      the same, each check first stating the question's answer ("A: The answer
             is 95. 95 is right.\nB: The answer is 95. 91 is wrong.\nAnswer: A"): the
             `check` judge copied the other response's number as "the answer"

`<variant>,evaluate` is the evaluation of that run (runs/smollm2_recipe/<variant>):
greedy and sampled accuracy, labelled and shortcut-proof held-out pairs, and the
model's own informative pairs, on the same families and levels, each beside its
question-blind bar; `python -m sjjax.report runs/smollm2_recipe` tabulates the variants.
"""

from sjjax import presets
from sjjax.data.templates import default_judge_templates
from sjjax.errors import ConfigError

TASKS = dict(families=("arithmetic", "compare", "count", "sort", "minmax"), levels=(1, 2))
PROTOTYPE = {
    "train.freeze_embeddings": True,
    "train.freeze_layers": 8,
    "train.learning_rate": 5e-5,
    "train.adam_b2": 0.95,
    "train.weight_decay": 0.01,
    "train.warmup_steps": 15,
    "train.schedule": "linear",
    "train.loss_normalization": "token",
    "data.judge_target_eos": False,
    "data.mix_batches": True,
}
# one change each, toward the smollm2 preset's JSFT
VARIANTS = {
    "prototype": {},
    "full": {"train.freeze_embeddings": False, "train.freeze_layers": 0},
    "eos": {"data.judge_target_eos": True},
    "example": {"train.loss_normalization": "example"},
    "lr4x": {"train.learning_rate": 2e-4},
    "grouped": {"data.mix_batches": False},
    # warmup_steps 0: the base config's warmup_ratio (3%) applies
    "optimizer": {"train.adam_b2": 0.999, "train.weight_decay": 0.0, "train.warmup_steps": 0,
                  "train.schedule": "cosine"},
}
VARIANTS["preset"] = {k: v for name in ("full", "eos", "grouped", "optimizer")
                      for k, v in VARIANTS[name].items()}
# The judges that write checks first: variant -> how each check starts (its `restate`).
# Their training settings are the prototype's; the data and template: `with_check`.
CHECKS = {"check": True, "solve": "answer"}
VARIANTS.update({name: {} for name in CHECKS})
ROOT = "runs/smollm2_recipe"


def with_check(c, source: dict, restate: bool | str = True) -> dict:
    """The `check` and `solve` variants: the judge template writes both checks before
    "Answer:" (no rationale after the decision), the synthetic pairs carry the checks
    (restate=True: the question's numbers copied first, as tiny_check's; "answer": the
    question's answer stated first), and the judge may write 128 tokens of them.
    Returns the data source with the checks."""
    c.judge.templates = {"helpfulness": dict(default_judge_templates()["helpfulness"],
                                             rationale="",
                                             check="A: {rationale_a}\nB: {rationale_b}\n")}
    c.judge.check_tokens = 128
    return {**source, "rationales": True, "restate": restate}


def get_config(arg: str = "prototype"):
    variant, _, phase = arg.partition(",")
    if variant not in VARIANTS or phase not in ("", "evaluate"):
        raise ConfigError(f"configs/smollm2_judge_recipe.py:{arg}: expected <variant>[,evaluate] "
                          f"with a variant in {sorted(VARIANTS)}")
    source = presets.synthetic_source(TASKS, n_sft=80, n_pairs=60, n_prompts=64,
                                      wrong_fraction=0.1)
    if phase == "evaluate":
        c = presets.make("evaluate", "smollm2")
        c.model.source = f"{ROOT}/{variant}"
        c.evaluate.label = variant
        c.evaluate.tournament_sizes = ()
        c.run_dir = f"{ROOT}/eval/{variant}"   # `python -m sjjax.report runs/smollm2_recipe`
    else:
        c = presets.make("jsft", "smollm2")
        presets.set_fields(c, {**PROTOTYPE, **VARIANTS[variant]},
                           f"configs/smollm2_judge_recipe.py:{variant}")
        c.run_dir = f"{ROOT}/{variant}"
    if variant in CHECKS:
        source = with_check(c, source, CHECKS[variant])
    c.data.sources = (source,)
    c.data.tfds_dir = f"{ROOT}/tfds"
    return c
