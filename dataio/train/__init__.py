"""DDP training harness: hierarchical / compressed allreduce hooks, bucket-size tuning, a step-time split.

``torchrun --nproc-per-node N -m dataio.train DATASET`` trains through :class:`dataio.DataLoader` (see
:mod:`dataio.train.harness`); :func:`register_allreduce` installs dataio's gradient exchange on any DDP model.
Names load lazily, so the CLI's option parsing does not import torch.
"""

from __future__ import annotations

from dataio._lazy import lazy_exports

__all__ = ["AllreduceHook", "CommStats", "TrainConfig", "TrainReport", "register_allreduce", "train"]

_LAZY = {
    "AllreduceHook": "dataio.train.hook",
    "CommStats": "dataio.train.hook",
    "TrainConfig": "dataio.train.config",
    "TrainReport": "dataio.train.report",
    "register_allreduce": "dataio.train.hook",
    "train": "dataio.train.harness",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
