"""dataio._native's argument checks that the review found wanting (issue 19 item 14): a read-only output array is
named as such, and crop_windows refuses a crop_ratio whose resized shorter side would overflow its arithmetic.
(The arrays run() reads without the GIL are copied first: tests/loaders/test_native_races.py, scenario mutate.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dataio
from dataio.loaders import native
from dataio.loaders.image.decode import ImageHeader

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="dataio._native is not built")


@pytest.fixture(scope="module")
def photo(synth_dir: Path) -> bytes:
    return sorted(synth_dir.rglob("*.JPEG"))[0].read_bytes()


def read_only(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    out = np.zeros(shape, dtype)
    out.flags.writeable = False
    return out


def test_a_read_only_out_is_named_as_read_only(photo: bytes) -> None:
    m = native.require()
    k = m.ImageKernel(1)
    box, flip, rows = np.array([[0, 0, 8, 8]], np.float64), np.zeros(1, np.uint8), np.zeros(1, np.int64)
    try:
        with pytest.raises(ValueError, match="out is read-only"):
            k.run([photo], box, flip, read_only((1, 3, 8, 8), np.uint8), rows, True)
    finally:
        k.close()
    with pytest.raises(ValueError, match="out is read-only"):
        m.decode_into(photo, (0, 0, 8, 8), False, read_only((3, 8, 8), np.uint8), True)
    with pytest.raises(ValueError, match="out is read-only"):
        m.jpeg_headers([photo], read_only((1, 4), np.int32))
    sizes, indices = np.array([[64, 48]], np.int64), np.zeros(1, np.int64)
    with pytest.raises(ValueError, match="boxes is read-only"):
        m.crop_windows(
            sizes,
            indices,
            0,
            0,
            True,
            8,
            (0.08, 1),
            (0.75, 1.33),
            0.875,
            read_only((1, 4), np.float64),
            np.zeros(1, np.uint8),
        )
    # read-only inputs are fine: they are only read (and copied)
    k = m.ImageKernel(1)
    try:
        box.flags.writeable = flip.flags.writeable = rows.flags.writeable = False
        assert k.run([photo], box, flip, np.zeros((1, 3, 8, 8), np.uint8), rows, True) == [None]
    finally:
        k.close()


@pytest.mark.parametrize("crop_ratio", [1e-300, 5e-324, 1e-9, 224 / (1 << 22) * 0.999])
def test_crop_ratio_below_the_resize_bound_is_refused(crop_ratio: float) -> None:
    m = native.require()
    boxes, flips = np.zeros((1, 4), np.float64), np.zeros(1, np.uint8)
    with pytest.raises(ValueError, match=r"crop_ratio must be in \[.*, 1\] for size 224"):
        m.crop_windows(
            np.array([[500, 375]], np.int64),
            np.zeros(1, np.int64),
            0,
            0,
            False,
            224,
            (0.08, 1),
            (0.75, 4 / 3),
            crop_ratio,
            boxes,
            flips,
        )


def test_crop_ratio_at_the_resize_bound_matches_the_python_path() -> None:
    lowest = 224 / (1 << 22)  # the resized shorter side: 4194304 pixels
    fast = dataio.ImagePipeline(train=False, size=224, crop_ratio=lowest, native=True)
    sizes = np.array([[500, 375], [1, 1], [1 << 31, 3], [7, 1 << 31]], np.int64)
    boxes, flips = fast.windows(sizes, np.arange(4), 0, 0)
    for i, (w, h) in enumerate(sizes):
        box, flip = fast.window(ImageHeader(int(w), int(h), True))
        assert tuple(boxes[i]) == tuple(box) and not flips[i] and not flip


@pytest.mark.parametrize("native_path", [True, False])
def test_the_pipeline_refuses_the_same_crop_ratios_on_both_paths(native_path: bool) -> None:
    """The Python path's check is the kernel's: a pipeline either works on both paths or is refused up front."""
    import dataio

    bound = 224 / (1 << 22)
    with pytest.raises(ValueError, match=r"crop_ratio must be in \[.*, 1\] for size 224"):
        dataio.ImagePipeline(train=False, size=224, crop_ratio=bound * 0.999, native=native_path)
    assert dataio.ImagePipeline(train=False, size=224, crop_ratio=bound, native=native_path).crop_ratio == bound
    with pytest.raises(ValueError, match="size must be an integer in 1"):
        dataio.ImagePipeline(train=False, size=(1 << 22) + 1)
