"""Run under XLA_FLAGS=--xla_force_host_platform_device_count=8 (see test_sharding.py):
the forward on a (data=2, fsdp=2, tensor=2) mesh equals the single-device forward, and
parameters are laid out as the logical-axis rules say."""

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from sjjax import sharding
from sjjax.model import ModelConfig, init_model, logical_axes, merge_params, split_params

assert jax.device_count() == 8, jax.devices()
cfg = ModelConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_layers=2,
                  num_heads=4, num_kv_heads=2, head_dim=16, attention_bias=True)
model = init_model(cfg, seed=0)
graphdef, params, _ = split_params(model)
rng = np.random.default_rng(0)
tokens = rng.integers(1, 128, (8, 12)).astype(np.int32)
mask = np.ones_like(tokens, bool)
mask[1, :5] = mask[6, :9] = False

forward = lambda p, t, m: merge_params(graphdef, p)(t, m)[0]
single = np.asarray(jax.jit(forward)(params, tokens, mask))

mesh = sharding.make_mesh((2, 2, 2))
rules = sharding.DEFAULT_RULES
axes = logical_axes(params)
with sharding.use_mesh(mesh, rules):
    sharded = sharding.shard_tree(params, axes, mesh, rules)
    batch = sharding.batch_sharding(mesh, 2, rules)
    step = jax.jit(forward, in_shardings=(jax.tree.map(lambda x: x.sharding, sharded), batch, batch))
    out = step(sharded, jax.device_put(tokens, batch), jax.device_put(mask, batch))
err = np.abs(np.asarray(out) - single).max()
assert err < 1e-5, f"sharded forward differs by {err}"

expected = {
    ("embedder",): (P("tensor", "fsdp"), (64, 32)),
    ("layers", "attn", "q_proj", "kernel"): (P(None, "fsdp", "tensor", None), (2, 32, 2, 16)),
    ("layers", "attn", "k_proj", "bias"): (P(None, "tensor", None), (2, 1, 16)),
    ("layers", "attn", "o_proj", "kernel"): (P(None, "tensor", None, "fsdp"), (2, 2, 16, 32)),
    ("layers", "mlp", "down_proj", "kernel"): (P(None, "tensor", "fsdp"), (2, 48, 32)),
    ("lm_head", "kernel"): (P("fsdp", "tensor"), (32, 64)),
    ("final_norm", "scale"): (P(None), (64,)),
}
for path, (spec, shard_shape) in expected.items():
    leaf = sharded
    for key in path:
        leaf = leaf[key]
    assert leaf.sharding.spec == spec, (path, leaf.sharding.spec, spec)
    shapes = {s.data.shape for s in leaf.addressable_shards}
    assert shapes == {shard_shape}, (path, shapes, shard_shape)
assert out.sharding.spec[0] == ("data", "fsdp"), out.sharding
print(f"OK max_abs_err={err:.2e}")
