"""Experiments that measure what dataio's choices do to training (``dataio experiment shuffle``).

Names load lazily, so the CLI's option parsing does not import torch.
"""

from __future__ import annotations

from dataio._lazy import lazy_exports

__all__ = ["RunSpec", "ShuffleExperimentConfig", "run_shuffle_experiment", "write_report"]

_LAZY = {
    "RunSpec": "dataio.experiments.config",
    "ShuffleExperimentConfig": "dataio.experiments.config",
    "run_shuffle_experiment": "dataio.experiments.runner",
    "write_report": "dataio.experiments.report",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
