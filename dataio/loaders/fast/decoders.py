"""The fast path's decoders: a chunk of records → rows of a batch slot, natively (a batch per call, C threads) or
the Python way (per image). Each is testable alone: it needs the pipeline, the epoch's plan, the record parser
and the error policy, and writes only through the :class:`~dataio.loaders.fast.slots.SlotView` it is given.

Both give the same crops (the windows are bit-identical) and the same labels, and both return how many samples
they left out (``on_error="skip"``).

- :class:`NativeDecoder`: Python parses the records (zero-copy views), reads the JPEG headers and draws the crop
  windows for the whole chunk in two native calls, then ``ImageKernel.run`` decodes, crops, resizes, flips and
  normalises every image on the kernel's threads with the GIL released once. Samples the kernel leaves (PNG,
  CMYK, anything libjpeg rejects or warns about) take the Python path one by one.
- :class:`PythonDecoder`: ``ImagePipeline.process`` per image on several Python threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from dataio.errors import SampleError
from dataio.loaders import native
from dataio.loaders.epoch import EpochPlan
from dataio.loaders.fast.slots import SlotView
from dataio.loaders.image.decode import read_header
from dataio.loaders.image.transforms import label_of, sample_rng

__all__ = ["Decoder", "NativeDecoder", "PythonDecoder", "RecordParser"]

#: ``parse(record, views)``: a record's bytes → the sample dict (``views=True``: fields as zero-copy views).
RecordParser = Callable[..., dict[str, Any]]


class Decoder(Protocol):
    """Decodes chunks of consecutive positions of one batch into its slot."""

    name: str

    def chunk(self, batch_size: int, threads: int) -> int:
        """Records per hand-off from the read stage."""
        ...

    def workers(self, threads: int, batch_size: int) -> int:
        """Python threads the decode stage runs for ``threads`` decode threads."""
        ...

    def set_threads(self, threads: int) -> None:
        """The tuner's decode-thread setting (the native kernel's pool follows it)."""
        ...

    def busy_seconds(self) -> float | None:
        """Busy seconds of the decoder's own threads so far, or None if the stage measures it per chunk."""
        ...

    def decode(self, records: Sequence[Any], positions: np.ndarray, slot: SlotView) -> int:
        """Decodes ``records`` (at epoch ``positions``) into ``slot``; returns how many it left out.

        Raises:
            SampleError: a sample cannot be decoded (naming its index and key), with ``on_error="raise"``.
        """
        ...


class _OneByOne:
    """The Python path of single samples, shared by both decoders (the native one for what the kernel leaves)."""

    def __init__(self, pipeline: Any, plan: EpochPlan, on_error: str) -> None:
        self.pipeline, self.plan, self.on_error = pipeline, plan, on_error

    def __call__(self, pos: int, sample: dict[str, Any], slot: SlotView, *, kernel_failed: bool = False) -> bool:
        """Sample at epoch position ``pos`` into its row of ``slot``; False when skipped."""
        index = int(self.plan.indices[pos])
        row = pos % self.plan.batch_size
        pipeline = self.pipeline
        try:
            rng = sample_rng(self.plan.seed, self.plan.epoch, index)
            if kernel_failed:  # the kernel tried already: straight to the Python decoder
                header = read_header(sample["image"])
                box, flip = pipeline.window(header, rng)
                image = pipeline.process_python(sample["image"], header, box, flip)
            else:
                image, _ = pipeline.process(sample, rng)
        except Exception as exc:
            if self.on_error == "skip":
                slot.skip(row)
                return False
            raise SampleError(f"decode stage: sample {index} (key {sample.get('key')!r}): {exc}") from exc
        slot.put_image(row, image, label_of(sample))
        return True


class PythonDecoder:
    """Per-image decoding on ``decode_threads`` Python threads (the fallback without the extension)."""

    name = "cpu-python"

    def __init__(self, pipeline: Any, plan: EpochPlan, parse: RecordParser, on_error: str) -> None:
        self._one = _OneByOne(pipeline, plan, on_error)
        self._parse = parse

    def chunk(self, batch_size: int, threads: int) -> int:
        """Enough chunks per batch for every decode thread to get work."""
        return max(1, min(16, batch_size // (2 * threads)))

    def workers(self, threads: int, batch_size: int) -> int:
        """One Python thread per decode thread."""
        return threads

    def set_threads(self, threads: int) -> None:
        """Nothing to do: the decode stage starts and parks Python threads itself."""

    def busy_seconds(self) -> float | None:
        """None: busy time is measured per chunk by the Python threads."""
        return None

    def decode(self, records: Sequence[Any], positions: np.ndarray, slot: SlotView) -> int:
        failed = 0
        for pos, record in zip(positions.tolist(), records, strict=True):
            failed += not self._one(pos, self._parse(record), slot)
        return failed


class NativeDecoder:
    """Whole batches through ``dataio._native.ImageKernel`` (see the module docstring).

    Args:
        owns_threads: False while another live iterator of the loader tunes the shared kernel.
    """

    name = "cpu-native"

    def __init__(
        self, pipeline: Any, plan: EpochPlan, parse: RecordParser, on_error: str, kernel: Any, owns_threads: bool
    ) -> None:
        self.pipeline, self.plan, self.kernel, self.owns_threads = pipeline, plan, kernel, owns_threads
        self._one = _OneByOne(pipeline, plan, on_error)
        self._parse = parse

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

    def decode(self, records: Sequence[Any], positions: np.ndarray, slot: SlotView) -> int:
        samples = [self._parse(record, views=True) for record in records]
        images = [s["image"] for s in samples]
        headers = native.jpeg_headers(images)
        usable = (headers[:, 3] == 0) & np.isin(headers[:, 2], list(native.JCS_NATIVE))
        ok = np.flatnonzero(usable)
        rows = positions % self.plan.batch_size
        failed = np.flatnonzero(~usable).tolist()
        if len(ok):
            plan = self.plan
            boxes, flips = self.pipeline.windows(headers[ok, :2], plan.indices[positions[ok]], plan.seed, plan.epoch)
            norm = slot.normalization
            result = self.kernel.run(
                [images[i] for i in ok], boxes, flips, slot.out, np.ascontiguousarray(rows[ok]), self.pipeline.train,
                list(norm.scale), list(norm.shift),
            )  # fmt: skip
            failed.extend(int(ok[j]) for j, r in enumerate(result) if r is not None)
            slot.put_labels(rows[ok], [label_of(samples[i]) for i in ok.tolist()])
        skipped = 0
        for i in sorted(failed):
            skipped += not self._one(int(positions[i]), samples[i], slot, kernel_failed=True)
        return skipped
