"""The 7-8B presets (the paper's recipe) on TPU pod slices, sharded fsdp x tensor.

    python -m sjjax.plan --config=configs/pod.py:llama2_7b,jsft,v4-32
    python -m sjjax.plan --config=configs/pod.py:mistral_7b,jsft,v5litepod-64,lora
    tpu_scripts/launch.sh --config=configs/pod.py:llama3_8b,self_judge,v5p-16 ...

The argument is `preset,phase,slice[,full|lora]`: preset in llama2_7b, llama3_8b,
mistral_7b, llama2_7b_uf, llama2_7b_uf_pr; any phase; slice in SLICES; the optional last
field forces full fine-tuning or LoRA (default: the paper's: LoRA r=8 for HH JSFT and
for self-training, full fine-tuning for UltraFeedback JSFT). The mesh, micro-batching
and the planner's accelerator come from the slice; gradient accumulation grows with the
batch (the same micro-batch as for 64 rows); every combination fits its slice by
`sjjax.plan` (tests/test_plan.py checks it; the table is in docs/scale.md).
"""

from sjjax import presets
from sjjax.presets import paper

# (data, fsdp, tensor) per slice, and gradient accumulation for the 64-example batch.
# v4-32: 16 devices (chips) of 32 GiB; v5litepod-64: 64 chips of 16 GiB; v5p-16: 8 chips
# of 95 GiB. FSDP shards parameters and optimizer state; tensor parallelism splits heads
# and the MLP where 16 GiB per chip would otherwise not hold the activations.
SLICES = {
    "v4-32": dict(mesh=(1, 16, 1), grad_accum=4),
    "v5litepod-64": dict(mesh=(1, 16, 4), grad_accum=4),
    "v5p-16": dict(mesh=(1, 8, 1), grad_accum=2),
}
MODELS = paper.PRESETS


def get_config(arg: str = "llama2_7b,jsft,v4-32"):
    fields = arg.split(",")
    if len(fields) not in (3, 4):
        raise ValueError(f"configs/pod.py:{arg}: expected preset,phase,slice[,full|lora]")
    preset, phase, slice_name = fields[:3]
    if preset not in MODELS:
        raise ValueError(f"configs/pod.py:{arg}: preset {preset!r} not in {MODELS}")
    if slice_name not in SLICES:
        raise ValueError(f"configs/pod.py:{arg}: slice {slice_name!r} not in {sorted(SLICES)}")
    c = presets.make(phase, preset)
    c.mesh.shape = SLICES[slice_name]["mesh"]
    rows = c.self_judge.prompts_per_step if phase == "self_judge" else c.data.batch_size
    c.train.grad_accum = SLICES[slice_name]["grad_accum"] * max(1, rows // 64)
    if len(fields) == 4:
        if fields[3] not in ("full", "lora"):
            raise ValueError(f"configs/pod.py:{arg}: last field must be full or lora")
        c.lora.enabled = fields[3] == "lora"
        c.lora.rank, c.lora.alpha = 8, 16.0
    c.plan = dict(accelerator=slice_name)
    return c
