"""NVIDIA DALI behind :class:`dataio.DataLoader` (``ImagePipeline(backend="dali")``): nvJPEG on the GPU
(``mixed``) or DALI's CPU threads, fed from a ShardDataset.

- :mod:`.pipeline`: the DALI graph (decode with the crop window, resize, flip, normalise) and its availability;
- :mod:`.feed`: the external source: records in the epoch's order with their crop windows;
- :mod:`.iterator`: one epoch (next, close, resume), its stats and error reporting.
"""
