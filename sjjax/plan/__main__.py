"""The planner's command line: prints the plan of a config (table or --json); exit
status 2 with the error on stderr when the config cannot be planned.

    python -m sjjax.plan --config=configs/jsft.py:llama2_7b --accelerator=v4-32
    python -m sjjax.plan --config=configs/pod.py:llama2_7b,jsft,v4-32
    python -m sjjax.plan --config=configs/self_judge.py --accelerator=v4-32 --json
"""

from __future__ import annotations

import json
import sys

from sjjax.errors import ConfigError
from sjjax.plan.memory import plan_config
from sjjax.plan.report import format_plan


def _define_flags():
    from absl import flags
    from ml_collections import config_flags
    config = config_flags.DEFINE_config_file(
        "config", None, "Path to an ml_collections config file (configs/*.py[:preset]).",
        lock_config=True)
    flags.DEFINE_string("accelerator", None, "e.g. v4-32, v5litepod-64, v5p-16, h100: sets "
                        "the device count and HBM per device")
    flags.DEFINE_integer("num_devices", None, "devices in the mesh (resolves a -1 in mesh.shape)")
    flags.DEFINE_float("device_memory_gib", None, "HBM per device for the fit check")
    flags.DEFINE_float("runtime_overhead_gib", None, "host CPU only: the process's own "
                       "memory, added as a persistent row (0.5 measured; docs/scale.md)")
    flags.DEFINE_bool("json", False, "print the plan as JSON")
    return config


def main(argv=None) -> int:
    from absl import app, flags
    config_flag = _define_flags()

    def _run(args):
        if len(args) > 1:
            raise app.UsageError(f"unexpected arguments: {args[1:]}")
        if config_flag.value is None:
            raise app.UsageError("--config=configs/<phase>.py is required")
        f = flags.FLAGS
        try:
            plan = plan_config(config_flag.value, accelerator=f.accelerator,
                               num_devices=f.num_devices, device_memory_gib=f.device_memory_gib,
                               runtime_overhead_gib=f.runtime_overhead_gib)
        except (ConfigError, ValueError, KeyError) as e:
            print(f"sjjax.plan: error: {e}", file=sys.stderr)
            return 2
        if f.json:
            print(json.dumps(plan.to_dict(), indent=2, default=str))
        else:
            print(format_plan(plan))
        return 0

    app.run(_run, argv=argv or sys.argv)
    return 0


if __name__ == "__main__":
    main()
