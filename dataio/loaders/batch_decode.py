"""The decode stage of the fast path, two ways: native (a batch per call, C threads) or Python (per image).

Both write one chunk of consecutive positions of a batch into its ring slot and return how many samples they
left out (``on_error="skip"``); both give the same crops (the windows are bit-identical) and the same labels.

- :class:`NativeDecoder`: Python parses the records (zero-copy views), reads the JPEG headers and draws the crop
  windows for the whole chunk in two native calls, then ``ImageKernel.run`` decodes, crops, resizes, flips and
  normalises every image on the kernel's threads with the GIL released once. Samples the kernel leaves (PNG,
  CMYK, anything libjpeg rejects or warns about) take the Python path one by one.
- :class:`PythonDecoder`: ``ImagePipeline.process`` per image on several Python threads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dataio.loaders import native
from dataio.loaders.decode import read_header
from dataio.loaders.transforms import sample_rng

__all__ = ["NativeDecoder", "PythonDecoder", "SampleError", "decode_sample"]


class SampleError(RuntimeError):
    """A sample that could not be decoded; names the sample key and index."""


def _label(sample: dict[str, Any]) -> int:
    label = sample.get("label")
    return -1 if label is None else int(label)


def decode_sample(st: Any, pos: int, sample: dict[str, Any], slot: int, *, kernel_failed: bool = False) -> bool:
    """One sample the Python way into its row of ``slot``; False when skipped (``on_error="skip"``).

    Raises:
        SampleError: The image cannot be decoded (names its index and key), with ``on_error="raise"``.
    """
    index = int(st.plan.indices[pos])
    row = pos % st.plan.batch_size
    pipeline = st.pipeline
    try:
        rng = sample_rng(st.plan.seed, st.plan.epoch, index)
        if kernel_failed:  # the kernel tried already: straight to the Python decoder
            header = read_header(sample["image"])
            box, flip = pipeline.window(header, rng)
            image = pipeline.process_python(sample["image"], header, box, flip)
        else:
            image, _ = pipeline.process(sample, rng)
    except Exception as exc:
        if st.on_error == "skip":
            st.ring.valid[slot][row] = False
            return False
        raise SampleError(f"sample {index} (key {sample.get('key')!r}): {exc}") from exc
    if not image.flags.writeable:
        image = image.copy()
    chw = torch.from_numpy(image).permute(2, 0, 1)  # the pipeline's images are CHW memory: contiguous
    dst = st.ring.images[slot][row]
    if st.feeder.cuda:
        dst.copy_(chw)
    else:  # normalise here, in this (GIL-free) thread; 2.6x faster than one addcmul of the uint8 input
        dst.copy_(chw).mul_(st.scale).add_(st.shift)
    st.ring.labels[slot][row] = _label(sample)
    st.ring.valid[slot][row] = True
    return True


class PythonDecoder:
    """Per-image decoding on ``decode_threads`` Python threads (the fallback without the extension)."""

    name = "cpu-python"

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def chunk(self, batch_size: int, threads: int) -> int:
        """Records per hand-off: enough chunks per batch for every decode thread to get work."""
        return max(1, min(16, batch_size // (2 * threads)))

    def workers(self, threads: int, batch_size: int) -> int:
        """Python threads taking chunks: one per decode thread."""
        return threads

    def set_threads(self, threads: int) -> None:
        """Nothing to do: the iterator starts and parks Python threads itself."""

    def busy_seconds(self) -> float | None:
        """None: busy time is measured per chunk by the Python threads."""
        return None

    def decode(self, st: Any, start: int, records: list[Any], slot: int) -> int:
        failed = 0
        for k, record in enumerate(records):
            failed += not decode_sample(st, start + k, st.ds.decode(record), slot)
        return failed


class NativeDecoder:
    """Whole batches through ``dataio._native.ImageKernel`` (see the module docstring)."""

    name = "cpu-native"

    def __init__(self, pipeline: Any, kernel: Any, owns_threads: bool = True) -> None:
        self.pipeline = pipeline
        self.kernel = kernel
        self.owns_threads = owns_threads  # False: another live iterator of the loader tunes the shared kernel

    def chunk(self, batch_size: int, threads: int) -> int:
        return batch_size  # one kernel call per batch

    def workers(self, threads: int, batch_size: int) -> int:
        """Python threads feeding the kernel: two, so one prepares a batch while the kernel decodes another
        (more when batches are small against the kernel's threads)."""
        return min(8, max(2, -(-2 * threads // max(1, batch_size))))

    def set_threads(self, threads: int) -> None:
        if self.owns_threads and threads != self.kernel.threads:
            self.kernel.set_threads(threads)

    def busy_seconds(self) -> float:
        """Seconds the kernel's threads have spent on images so far (all calls)."""
        return float(self.kernel.busy_seconds)

    def decode(self, st: Any, start: int, records: list[Any], slot: int) -> int:
        samples = [st.ds.decode(record, views=True) for record in records]
        images = [s["image"] for s in samples]
        n = len(samples)
        headers = native.jpeg_headers(images)
        usable = (headers[:, 3] == 0) & np.isin(headers[:, 2], list(native.JCS_NATIVE))
        ok = np.flatnonzero(usable)
        positions = start + np.arange(n)
        rows = positions % st.plan.batch_size
        failed = np.flatnonzero(~usable).tolist()
        if len(ok):
            plan = st.plan
            boxes, flips = self.pipeline.windows(headers[ok, :2], plan.indices[positions[ok]], plan.seed, plan.epoch)
            out = st.ring.images[slot].numpy()  # float32 (CPU: normalised here) or pinned uint8 (CUDA)
            result = self.kernel.run(
                [images[i] for i in ok], boxes, flips, out, np.ascontiguousarray(rows[ok]), self.pipeline.train,
                st.scale_list, st.shift_list,
            )
            failed.extend(int(ok[j]) for j, r in enumerate(result) if r is not None)
            st.ring.labels[slot][torch.from_numpy(rows[ok])] = torch.tensor([_label(samples[i]) for i in ok.tolist()])
            st.ring.valid[slot][rows[ok]] = True
        skipped = 0
        for i in sorted(failed):
            skipped += not decode_sample(st, int(positions[i]), samples[i], slot, kernel_failed=True)
        return skipped
