"""sjjax's JSFT training loop against PyTorch's AdamW on transformers' model, step by step
on the batches sjjax trained on (`bench/training_parity.py`): the optimizer, its
learning-rate schedule, clipping, weight decay, frozen parts, loss normalisation, judge
weighting and gradient accumulation, each written on the PyTorch side from the config
alone. A scaled-down tiny model, 5 steps at a learning rate where any difference shows."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CASES = {
    # frozen embeddings (tied: the output layer too) and layer 0, decoupled weight decay,
    # a 2-step warm-up into linear decay, per-token loss
    "frozen": ["train.freeze_embeddings=True", "train.freeze_layers=1",
               "train.weight_decay=0.1", "train.warmup_steps=2", "train.schedule='linear'",
               "train.loss_normalization='token'", "train.adam_b2=0.95"],
    # everything trained, per-example loss, judgments weighted 2x, 2 micro-batches,
    # cosine decay, clipping at 0.5 (the gradient norm is ~3 here: it always clips)
    "full": ["train.loss_normalization='example'", "train.judge_loss_weight=2.0",
             "train.grad_accum=2", "train.schedule='cosine'", "train.max_grad_norm=0.5"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_matches_pytorch(case, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    sys.path.insert(0, ROOT)
    from bench.training_parity import main
    args = ["--config", os.path.join(ROOT, "tests/phases/small_config.py:jsft"), "--steps", "5",
            "--set", "train.learning_rate=3e-3", "--set", "log.progress=False",
            "--workdir", str(tmp_path)]
    for item in CASES[case]:
        args += ["--set", item]
    result = main(args)
    ours, peer = result["sjjax"], result["torch"]
    assert len(ours) == len(peer) == 5
    # The weights moved (the loss changed by far more than the tolerance) ...
    assert abs(ours[-1]["loss"] - ours[0]["loss"]) > 0.05
    # ... and moved the same way on both sides.
    assert result["max_abs_diff_loss"] < 2e-4
    assert result["max_abs_diff_judge_loss"] < 2e-4
    # The logged gradient norm: the trainable part's, before clipping, as PyTorch's.
    assert result["max_abs_diff_grad_norm"] < 1e-3 * max(r["grad_norm"] for r in peer)
