"""Frozen embeddings and lower layers (`train.freeze_embeddings`, `train.freeze_layers`):
AdamW with weight decay leaves them bit-identical while the rest moves."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from sjjax.errors import ConfigError
from sjjax.train.optim import frozen_parts, make_optimizer

LAYERS = 4


def params():
    """The shape of sjjax's parameter tree: stacked layers on axis 0, an untied head."""
    return {"embedder": jnp.ones((10, 3)),
            "layers": {"mlp": {"up_proj": {"kernel": jnp.ones((LAYERS, 3, 5))}},
                       "input_norm": {"scale": jnp.ones((LAYERS, 3))}},
            "final_norm": {"scale": jnp.ones((3,))},
            "lm_head": {"kernel": jnp.ones((3, 10))}}


def train_config(**kw):
    # adam_eps = 1: the update's size follows the (clipped) gradient's, so a frozen
    # gradient counted in the clipping norm would show in the trained rows
    return ml_collections.ConfigDict(dict(learning_rate=1e-2, schedule="constant",
                                          warmup_ratio=0.0, weight_decay=0.1, adam_eps=1.0,
                                          max_grad_norm=1.0, **kw))


def run(train, steps=3):
    optimizer, _ = make_optimizer(train, 10)
    p = params()
    state = optimizer.init(p)
    grads = jax.tree.map(lambda x: jnp.full_like(x, 5.0), p)
    for _ in range(steps):
        updates, state = optimizer.update(grads, state, p)
        p = jax.tree.map(lambda a, u: a + u, p, updates)
    return p


def test_frozen_parameters_do_not_move_under_weight_decay():
    before, after = params(), run(train_config(freeze_embeddings=True, freeze_layers=2))
    np.testing.assert_array_equal(after["embedder"], before["embedder"])
    np.testing.assert_array_equal(after["lm_head"]["kernel"], before["lm_head"]["kernel"])
    for leaf in (after["layers"]["mlp"]["up_proj"]["kernel"],
                 after["layers"]["input_norm"]["scale"]):
        np.testing.assert_array_equal(leaf[:2], 1.0)           # layers 0, 1: frozen
        assert np.all(np.asarray(leaf[2:]) < 1.0)               # layers 2, 3: trained
    assert np.all(np.asarray(after["final_norm"]["scale"]) < 1.0)


def test_trained_rows_match_an_optimizer_without_the_frozen_gradients():
    """Frozen gradients are zeroed before clipping: the trained rows move as they would
    with those gradients absent (a hand-built tree whose frozen gradients are 0)."""
    frozen = run(train_config(freeze_embeddings=True, freeze_layers=2))
    optimizer, _ = make_optimizer(train_config(), 10)
    p = params()
    state = optimizer.init(p)
    grads = jax.tree.map(lambda x: jnp.full_like(x, 5.0), p)
    grads["embedder"] = jnp.zeros_like(grads["embedder"])
    grads["lm_head"]["kernel"] = jnp.zeros_like(grads["lm_head"]["kernel"])
    grads["layers"] = jax.tree.map(lambda g: g.at[:2].set(0.0), grads["layers"])
    for _ in range(3):
        updates, state = optimizer.update(grads, state, p)
        p = jax.tree.map(lambda a, u: a + u, p, updates)
    np.testing.assert_allclose(frozen["layers"]["mlp"]["up_proj"]["kernel"][2:],
                               p["layers"]["mlp"]["up_proj"]["kernel"][2:], rtol=1e-6)
    np.testing.assert_allclose(frozen["final_norm"]["scale"], p["final_norm"]["scale"],
                               rtol=1e-6)


def test_nothing_frozen_by_default():
    after = run(train_config())
    assert np.all(np.asarray(after["embedder"]) < 1.0)
    assert np.all(np.asarray(after["layers"]["input_norm"]["scale"]) < 1.0)


def test_more_frozen_layers_than_the_model_has_names_the_key():
    transform = frozen_parts(False, LAYERS + 1)
    with pytest.raises(ConfigError, match="train.freeze_layers"):
        transform.update(params(), transform.init(params()))


@pytest.mark.parametrize("tied", [True, False])
def test_a_real_parameter_tree_freezes_its_embeddings_and_lower_layers(tied):
    """On the model's own tree (stacked layers, tied or untied head): the embeddings, the
    head and layer 0 get zero updates; layer 1 and the final norm do not."""
    from sjjax.model.config import ModelConfig
    from sjjax.model.transformer import init_model, split_params
    cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=2,
                      num_heads=4, num_kv_heads=2, head_dim=8, tie_word_embeddings=tied)
    _, p, _ = split_params(init_model(cfg))
    optimizer, _ = make_optimizer(train_config(freeze_embeddings=True, freeze_layers=1), 10)
    grads = jax.tree.map(lambda x: jnp.ones_like(x), p)
    updates, _ = optimizer.update(grads, optimizer.init(p), p)
    assert np.all(np.asarray(updates["embedder"]) == 0)
    assert ("lm_head" in updates) != tied
    if not tied:
        assert np.all(np.asarray(updates["lm_head"]["kernel"]) == 0)
    for leaf in jax.tree.leaves(updates["layers"]):
        assert leaf.shape[0] == 2
        assert np.all(np.asarray(leaf[0]) == 0) and np.all(np.asarray(leaf[1]) != 0)
    assert np.all(np.asarray(updates["final_norm"]["scale"]) != 0)
