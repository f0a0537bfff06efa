"""DALI baselines for benchmarks/loader_throughput.py: DALI's own file reader on the JPEG folder, and DALI's
parallel external source reading the packed shards (the alternative to dataio's feeder thread)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

import dataio
from dataio.loaders.dali.feed import sample_window
from dataio.loaders.image.transforms import sample_rng

__all__ = ["ShardSource", "dali_folder_rate", "dali_parallel_source_rate"]


class ShardSource:
    """DALI parallel external_source callback (per sample, in DALI's worker processes): reads one record of the
    packed set and computes its crop window exactly as dataio's own DALI feeder does."""

    def __init__(self, path: str, pipeline, indices: np.ndarray, seed: int) -> None:
        self.path, self.pipeline, self.indices, self.seed = path, pipeline, indices, seed
        self.ds = None

    def __call__(self, info):
        if info.idx_in_epoch >= len(self.indices):
            raise StopIteration
        if self.ds is None:
            self.ds = dataio.open_dataset(self.path)
        index = int(self.indices[info.idx_in_epoch])
        sample = self.ds[index]
        start, end, flip = sample_window(self.pipeline, sample["image"], sample_rng(self.seed, 0, index))
        return np.frombuffer(sample["image"], np.uint8), start, end, flip, np.array(sample["label"], np.int64)


def dali_parallel_source_rate(packed: Path, dali_pipe, args, workers: int, rep: int) -> float:
    """DALI's parallel external source (Python worker processes) reading the packed set: the alternative to
    dataio's feeder thread, same graph, same output conversion."""
    from nvidia.dali import Pipeline, fn, types
    from nvidia.dali.plugin.pytorch import feed_ndarray

    indices = np.random.default_rng(rep).permutation(len(dataio.open_dataset(packed)))
    pipe = Pipeline(
        batch_size=args.batch_size,
        num_threads=workers,
        device_id=None,
        py_num_workers=workers,
        py_start_method="spawn",
        prefetch_queue_depth=4,
        exec_dynamic=True,
    )
    with pipe:
        jpegs, starts, ends, flips, labels = fn.external_source(
            source=ShardSource(str(packed), dali_pipe, indices, rep), num_outputs=5, parallel=True, batch=False
        )
        images = fn.decoders.image_slice(
            jpegs, start=starts, end=ends, axis_names="WH", device="cpu", output_type=types.RGB
        )
        images = fn.resize(images, size=[args.size, args.size], antialias=True)
        images = fn.crop_mirror_normalize(
            images,
            dtype=types.FLOAT,
            output_layout="CHW",
            mirror=flips,
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
        )
        pipe.set_outputs(images, labels)
    pipe.build()
    pipe.run()  # start-up (worker processes)
    t, n = time.perf_counter(), 0
    try:
        while True:
            images, labels = pipe.run()
            batch = images.as_tensor()
            feed_ndarray(batch, torch.empty(batch.shape(), dtype=torch.float32))
            n += len(labels)
    except StopIteration:
        pass
    return n / (time.perf_counter() - t)


def dali_folder_rate(src: Path, args, workers: int) -> float:
    """DALI's own file reader + random-crop decoder on the JPEG folder (no dataio involved)."""
    from nvidia.dali import Pipeline, fn, types

    gpu = args.device == "cuda"
    pipe = Pipeline(
        batch_size=args.batch_size,
        num_threads=workers,
        device_id=0 if gpu else None,
        prefetch_queue_depth=4,
        exec_dynamic=True,
    )
    with pipe:
        jpegs, labels = fn.readers.file(file_root=str(src), random_shuffle=True, seed=1, name="reader")
        images = fn.decoders.image_random_crop(
            jpegs,
            device="mixed" if gpu else "cpu",
            output_type=types.RGB,
            random_area=[0.08, 1.0],
            random_aspect_ratio=[3 / 4, 4 / 3],
        )
        images = fn.resize(images, size=[args.size, args.size], antialias=True)
        images = fn.crop_mirror_normalize(
            images,
            dtype=types.FLOAT,
            output_layout="CHW",
            mirror=fn.random.coin_flip(),
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
        )
        pipe.set_outputs(images, labels)
    pipe.build()
    from nvidia.dali.plugin.pytorch import feed_ndarray

    def step() -> None:  # outputs handed over as torch tensors, as a training loop gets them
        images, _ = pipe.run()
        batch = images.as_tensor()
        out = torch.empty(batch.shape(), dtype=torch.float32, device="cuda" if gpu else "cpu")
        if gpu:
            feed_ndarray(batch, out, cuda_stream=torch.cuda.current_stream())
        else:
            feed_ndarray(batch, out)

    epoch = pipe.reader_meta("reader")["epoch_size"]
    steps = epoch // args.batch_size
    step()  # start-up
    t = time.perf_counter()
    for _ in range(steps - 1):
        step()
    if gpu:
        torch.cuda.synchronize()
    return (steps - 1) * args.batch_size / (time.perf_counter() - t)
