"""Memory and FLOPs planner: will a config fit on its mesh, and how much work is a step?

    python -m sjjax.plan --config=configs/jsft.py --accelerator=v4-32 \\
        --config.model.source=llama2_7b --config.mesh.shape='(1,16,1)'
    python -m sjjax.plan --config=configs/self_judge.py --accelerator=v4-32 --json

Nothing is allocated: parameter shapes come from `nnx.eval_shape` of the real model,
their per-device share from the config's logical-axis rules (`sharding.logical_to_spec`,
the function the training code shards with). Activations, optimizer state, the KV cache
and FLOPs follow the formulas in `docs/scale.md`; each reported row carries its formula
so that it can be checked against measured memory. Numbers are bytes unless a column
says otherwise; GiB = 2**30 bytes.

One job per module:
    devices       the accelerator catalogue ('v4-32' -> 16 devices of 32 GiB)
    architecture  config.model.source -> ModelConfig (no weights are read)
    inputs        a config -> PlanInputs (mesh, batch, phase, device)
    tensors       arrays, their per-device share under the sharding rules, parameters
    activations   a training step's activation memory
    step_flops    FLOPs of a step and of a sampling call
    memory        the Plan: every memory row, totals, peak, fit
    report        the Plan as text
    __main__      the command line
"""

from sjjax.plan.activations import (LOGITS_CHUNK_COPIES, LOGITS_COPIES, SAMPLING_LOGIT_COPIES,
                                    WORKING_LAYERS, activation_rows, layer_activation_tensors)
from sjjax.plan.architecture import architecture
from sjjax.plan.devices import DEFAULT_MEMORY_GIB, DEVICES, DeviceSpec, parse_accelerator
from sjjax.plan.step_flops import flops
from sjjax.plan.inputs import (JUDGING_PHASES, PREFERENCE_PHASES, SAMPLING_PHASES,
                               TRAINING_PHASES, PlanInputs, inputs_from_config,
                               model_config_from)
from sjjax.plan.memory import Plan, make_plan, plan_config
from sjjax.plan.report import format_plan, verdict
from sjjax.plan.tensors import (GIB, GROUPS, Row, Tensor, abstract_mesh, base_param_tensors,
                                batch_shards, lora_param_tensors, per_device_bytes,
                                projection_shapes, shard_factor)

__all__ = [
    "DEFAULT_MEMORY_GIB", "DEVICES", "DeviceSpec", "GIB", "GROUPS", "JUDGING_PHASES",
    "LOGITS_CHUNK_COPIES", "LOGITS_COPIES", "PREFERENCE_PHASES", "Plan", "PlanInputs", "Row",
    "SAMPLING_LOGIT_COPIES",
    "SAMPLING_PHASES", "TRAINING_PHASES", "Tensor", "WORKING_LAYERS", "abstract_mesh",
    "activation_rows", "architecture", "base_param_tensors", "batch_shards", "flops",
    "format_plan", "inputs_from_config", "layer_activation_tensors", "lora_param_tensors",
    "make_plan", "model_config_from", "parse_accelerator", "per_device_bytes", "plan_config",
    "projection_shapes", "shard_factor", "verdict",
]
