"""The NVIDIA DALI graph behind ``ImagePipeline(backend="dali")``: ROI decode → resize → flip + normalise.

dataio keeps the sampling, the reading and the augmentation *parameters*; DALI does the pixel work. Every
batch arrives through one ``fn.external_source`` callback with four per-sample inputs, computed by dataio from
``(seed, epoch, index)`` exactly as the CPU backend computes them:

- the encoded image bytes (uint8, 1-D),
- the crop window's start ``(x, y)`` and end ``(x, y)`` in source pixels (RandomResizedCrop's box for train, the
  centre-crop box for val),
- the horizontal-flip flag, and the label (int64).

``fn.decoders.image_slice`` decodes only that window (ROI decoding: the crop is fused into the decode, on the
GPU with ``device="mixed"``), ``fn.resize`` scales it to ``size × size`` with an antialiased linear filter and
``fn.crop_mirror_normalize`` flips, converts to float and normalises with the ImageNet mean/std into CHW. So
train batches use the same crops and flips as the CPU backend (reproducible and resumable from the loader's
seed), and only the resampling kernels differ.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["INSTALL_HINT", "build_pipeline", "dali_available", "import_dali"]

INSTALL_HINT = "pip install nvidia-dali-cuda120 (or: pip install 'dataio[dali]')"


def import_dali() -> Any:
    """Imports ``nvidia.dali`` (lazily: DALI is optional).

    Raises:
        ImportError: DALI is not installed; the message says how to install it.
    """
    try:
        return importlib.import_module("nvidia.dali")
    except ImportError as exc:
        raise ImportError(f"ImagePipeline(backend='dali') needs NVIDIA DALI: {INSTALL_HINT}") from exc


def dali_available() -> bool:
    """True when NVIDIA DALI can be imported."""
    try:
        import_dali()
    except ImportError:
        return False
    return True


def build_pipeline(
    source: Callable[[], tuple[list[Any], ...]],
    *,
    batch_size: int,
    size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    num_threads: int,
    device_id: int | None,
    prefetch: int,
) -> Any:
    """Builds (and ``build()``s) the DALI pipeline fed by ``source``.

    Args:
        source: Called once per batch (in DALI's thread, in order); returns ``(images, starts, ends, flips,
            labels)``, each a list with one numpy array per sample (a short last batch is allowed), or raises
            ``StopIteration`` at the end of the epoch.
        batch_size: Maximum samples per batch.
        size: Output side in pixels.
        mean: Per-channel mean on the 0..1 scale.
        std: Per-channel standard deviation on the 0..1 scale.
        num_threads: DALI's CPU worker threads.
        device_id: CUDA device for ``device="mixed"`` decoding and GPU operators, or None for a CPU-only
            pipeline (DALI fails at build with a device id and no GPU).
        prefetch: Batches DALI runs ahead (``prefetch_queue_depth``).

    Returns:
        The built ``nvidia.dali.Pipeline``; outputs ``(images float32 N×3×size×size, labels int64 N)``.
    """
    dali = import_dali()
    fn, types = dali.fn, dali.types
    pipe = dali.Pipeline(
        batch_size=batch_size,
        num_threads=max(1, num_threads),
        device_id=device_id,
        prefetch_queue_depth=max(1, prefetch),
        exec_dynamic=True,
    )
    gpu = device_id is not None
    with pipe:
        images, starts, ends, flips, labels = fn.external_source(
            source=source, num_outputs=5, batch=True, no_copy=False
        )
        decoded = fn.decoders.image_slice(
            images,
            start=starts,
            end=ends,
            axis_names="WH",
            device="mixed" if gpu else "cpu",
            output_type=types.RGB,
        )
        resized = fn.resize(decoded, size=[size, size], interp_type=types.INTERP_LINEAR, antialias=True)
        out = fn.crop_mirror_normalize(
            resized,
            dtype=types.FLOAT,
            output_layout="CHW",
            mean=[255.0 * m for m in mean],
            std=[255.0 * s for s in std],
            mirror=flips,
        )
        pipe.set_outputs(out, labels)
    pipe.build()
    return pipe
