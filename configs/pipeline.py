"""The whole pipeline under one preset: SFT and offline-DPO baselines, JSFT, k
self-judge iterations, evaluation of every model, a tournament sweep, a report.

    python -m sjjax.main --config=configs/pipeline.py[:preset] [--config.iterations=2]

Rerunning the command resumes: finished phases are skipped, an interrupted one resumes.
"""

from sjjax.phases.pipeline import default_pipeline_config


def get_config(preset: str = "tiny"):
    return default_pipeline_config(preset)
