"""Entry point: `python -m sjjax.main --config=configs/<phase>.py [--config.key=value ...]`.

Thin on purpose: parse the config, validate it (before anything compiles), pick the
phase named by `config.phase`, run it.
"""

from __future__ import annotations

import sys

from absl import app
from ml_collections import config_flags

from sjjax.phases import run_phase

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to an ml_collections config file (configs/*.py[:preset]).",
    lock_config=True)

def _setup_logging():
    """Our progress at INFO; libraries' INFO chatter (Orbax, XLA) off unless asked."""
    import logging

    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("sjjax")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False


def _maybe_initialize_distributed():
    """Multi-host runs (TPU pod slices, multi-node GPU): SJJAX_DISTRIBUTED=1 makes every
    host join one JAX runtime before anything touches a device (tpu_scripts/launch.sh
    sets it). On Cloud TPU the coordinator is discovered automatically."""
    import os
    if os.environ.get("SJJAX_DISTRIBUTED") == "1":
        import jax
        jax.distributed.initialize()


def _main(argv):
    _setup_logging()
    _maybe_initialize_distributed()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None:
        raise app.UsageError("--config=configs/<phase>.py is required")
    run_phase(_CONFIG.value)


def run_main():
    app.run(_main, argv=sys.argv)


if __name__ == "__main__":
    run_main()
