"""Sampling layer: which sample each rank reads, in which order, every epoch.

Pure numpy (plus an optional look-up of torch.distributed for rank / world size): no IO, no threads.
"""

from dataio.sampling.layout import ShardLayout
from dataio.sampling.modes import MODES, Mode, get_mode
from dataio.sampling.plan import ShuffleConfig
from dataio.sampling.protocol import ResumableSampler, resumable
from dataio.sampling.quality import ShuffleStats, shuffle_stats
from dataio.sampling.sampler import DistributedShuffleSampler

__all__ = [
    "MODES",
    "DistributedShuffleSampler",
    "Mode",
    "ResumableSampler",
    "ShardLayout",
    "ShuffleConfig",
    "ShuffleStats",
    "get_mode",
    "resumable",
    "shuffle_stats",
]
