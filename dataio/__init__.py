"""dataio: remove the IO bottleneck from deep-learning training.

Public names load lazily, so ``import dataio`` (and the pack worker processes) start without importing
torch; ``dataio.open_dataset`` and friends import it on first use.
"""

from __future__ import annotations

from dataio._lazy import lazy_exports

__version__ = "0.1.0"

__all__ = [
    "AutotuneConfig",
    "ChecksumError",
    "DataLoader",
    "DataioError",
    "DecodeError",
    "DistributedShuffleSampler",
    "FormatError",
    "ImagePipeline",
    "ManifestError",
    "PackError",
    "PackOptions",
    "RetryPolicy",
    "SampleError",
    "ShardDataset",
    "VersionError",
    "__version__",
    "dataset_info",
    "open_dataset",
    "pack",
    "verify_dataset",
]

_LAZY = {
    "AutotuneConfig": "dataio.loaders.autotune",
    "ChecksumError": "dataio.errors",
    "DataLoader": "dataio.loaders.loader",
    "DataioError": "dataio.errors",
    "DecodeError": "dataio.loaders.image.decode",
    "DistributedShuffleSampler": "dataio.sampling",
    "FormatError": "dataio.errors",
    "ImagePipeline": "dataio.loaders.image.pipeline",
    "ManifestError": "dataio.errors",
    "PackError": "dataio.errors",
    "PackOptions": "dataio.pack",
    "RetryPolicy": "dataio.storage",
    "SampleError": "dataio.errors",
    "ShardDataset": "dataio.dataset",
    "VersionError": "dataio.errors",
    "dataset_info": "dataio.inspection",
    "open_dataset": "dataio.dataset",
    "pack": "dataio.pack",
    "verify_dataset": "dataio.inspection",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
