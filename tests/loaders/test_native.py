"""dataio._native: the batch image kernel, the batch crop windows and the header reader, against the Python path.

Tolerance (native kernel vs the Python path, same crop box): both decode with libjpeg-turbo at the same DCT
scale and resample with Pillow's antialiased bilinear filter (the Python path through torch's port of it at full
scale, Pillow at reduced scales), so pixels agree within ±2 of 255. Measured on 64 synth photos at 32, 97 and
224 px, train and val: mean absolute difference 0.001-0.048 over all images, at most 0.233 for one image (where
the crop is decoded at full scale: torch's port uses int16 weights, Pillow 22-bit ones), max 2. Bound per image:
max <= 2, mean < 0.35 (the issue's bound is 1.0). The crop windows are
bit-identical. Hostile bytes (truncations, flips, garbage, absurd header sizes) must end as a status for that
image, never as a crash.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import dataio
from dataio.loaders import native
from dataio.loaders.image.decode import ImageHeader, decode_crop_resize, read_header
from dataio.loaders.image.transforms import center_crop_box, normalization, sample_rng
from tests.helpers import jpeg_with_size

MAX_DIFF, MAX_MEAN = 2, 0.35

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="dataio._native is not built")


def _encode(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos(synth_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(synth_dir.rglob("*.JPEG"))[:16]]


@pytest.fixture(scope="module")
def variants(photos: list[bytes]) -> dict[str, bytes]:
    """One photo in every JPEG flavour the kernel decodes itself."""
    img = Image.open(io.BytesIO(photos[0])).convert("RGB")
    odd = img.resize((333, 77))
    return {
        "baseline-420": _encode(img, quality=90),
        "444": _encode(img, quality=90, subsampling=0),
        "422": _encode(img, quality=90, subsampling=1),
        "progressive": _encode(img, quality=85, progressive=True),
        "restart-markers": _encode(img, quality=90, restart_marker_blocks=3),
        "grayscale": _encode(img.convert("L"), quality=90),
        "odd-size": _encode(odd, quality=90),
        "tiny-1x1": _encode(img.resize((1, 1))),
        "big-1900": _encode(img.resize((1900, 1406), Image.Resampling.BICUBIC), quality=90),
    }


def kernel_image(data: bytes, box, flip: bool, size: tuple[int, int], crop_first: bool) -> np.ndarray:
    out = np.zeros((1, 3, size[1], size[0]), np.uint8)
    k = native.require().ImageKernel(1)
    try:
        result = k.run([data], np.array([box], np.float64), np.array([flip], np.uint8), out, np.zeros(1, np.int64),
                       crop_first)
    finally:
        k.close()
    assert result == [None], result
    return out[0].transpose(1, 2, 0)


def assert_close(a: np.ndarray, b: np.ndarray) -> None:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert d.max() <= MAX_DIFF and d.mean() < MAX_MEAN, (int(d.max()), float(d.mean()))


# -- pixels -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("size", [32, 97, 224])
def test_batches_match_the_python_path(photos: list[bytes], train: bool, size: int) -> None:
    fast = dataio.ImagePipeline(train=train, size=size, native=True)
    slow = dataio.ImagePipeline(train=train, size=size, native=False)
    for i, data in enumerate(photos):
        a, _ = fast.process({"image": data}, sample_rng(3, 1, i))
        b, _ = slow.process({"image": data}, sample_rng(3, 1, i))
        assert_close(a, b)


@pytest.mark.parametrize("name", ["baseline-420", "444", "422", "progressive", "restart-markers", "grayscale",
                                  "odd-size", "tiny-1x1", "big-1900"])
def test_every_jpeg_flavour_and_window_matches(variants: dict[str, bytes], name: str) -> None:
    data = variants[name]
    h = read_header(data)
    w_, h_ = h.width, h.height
    crops = [  # RandomResizedCrop-style boxes (crop first; whole pixels at full scale, as the Python path rounds)
        (0, 0, w_, h_),  # the whole image
        (0, 0, 1, 1),  # one pixel at the corner
        (w_ - 1, h_ - 1, w_, h_),  # the last pixel
        (0, h_ // 2, max(1, w_ // 3), h_),  # touching the left and bottom borders
        (w_ / 7, h_ / 5, w_ - w_ / 9, h_ - h_ / 11),  # fractional
    ]
    for box in crops:
        if box[2] <= box[0] or box[3] <= box[1]:
            continue
        for size, flip in [((24, 24), False), ((61, 45), True), ((300, 200), True)]:
            want = decode_crop_resize(data, box, size, flip, crop_first=True)
            assert_close(kernel_image(data, box, flip, size, True), np.ascontiguousarray(want))
    for size, crop_ratio in [(24, 0.875), (61, 0.5), (300, 1.0)]:  # Resize + CenterCrop boxes (val)
        box = center_crop_box(h_, w_, size, crop_ratio)
        want = decode_crop_resize(data, box, (size, size), False, crop_first=False)
        assert_close(kernel_image(data, box, False, (size, size), False), np.ascontiguousarray(want))


def test_float_output_is_normalised_exactly_like_the_python_path(photos: list[bytes]) -> None:
    pipe = dataio.ImagePipeline(train=False, size=40)
    scale, shift = (list(v) for v in normalization(pipe.mean, pipe.std))  # the constants every path uses
    box, flip = pipe.window(read_header(photos[1]))
    u8 = np.zeros((1, 3, 40, 40), np.uint8)
    f32 = np.zeros((1, 3, 40, 40), np.float32)
    k = native.require().ImageKernel(2)
    for out in (u8, f32):
        assert k.run([photos[1]], np.array([box]), np.array([flip], np.uint8), out, np.zeros(1, np.int64), False,
                     scale, shift) == [None]
    k.close()
    import torch

    want = pipe.normalize(torch.from_numpy(u8[0])).numpy()
    assert np.array_equal(f32[0], want)  # same float32 operations, same order


def test_unsupported_images_come_back_with_a_status(photos: list[bytes]) -> None:
    img = Image.open(io.BytesIO(photos[0]))
    cmyk = _encode(img.convert("CMYK"))
    png = io.BytesIO()
    img.save(png, "PNG")
    k = native.require().ImageKernel(2)
    out = np.zeros((3, 3, 16, 16), np.uint8)
    boxes = np.array([[0, 0, 10, 10]] * 3, np.float64)
    result = k.run([cmyk, png.getvalue(), photos[0]], boxes, np.zeros(3, np.uint8), out, np.arange(3), True)
    k.close()
    assert result[0][0] == native.module().STATUS_UNSUPPORTED and "CMYK" in result[0][1]
    assert result[1][0] == native.module().STATUS_JPEG and result[2] is None
    assert not out[:2].any() and out[2].any()  # failed rows are left alone
    # ImagePipeline sends them the Python way: same result as native=False
    for data in (cmyk, png.getvalue()):
        a, _ = dataio.ImagePipeline(train=True, size=16).process({"image": data}, sample_rng(0, 0, 1))
        b, _ = dataio.ImagePipeline(train=True, size=16, native=False).process({"image": data}, sample_rng(0, 0, 1))
        assert np.array_equal(a, b)


# -- crop windows -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("train", [True, False])
def test_crop_windows_are_bit_identical_to_image_pipeline_window(train: bool) -> None:
    rs = np.random.default_rng(1)
    for trial in range(3):
        pipe = dataio.ImagePipeline(train=train, size=int(rs.integers(1, 300)), scale=(float(rs.uniform(0.01, 1)), 1.0),
                                    ratio=(0.5, float(rs.uniform(0.6, 3))), crop_ratio=float(rs.uniform(0.3, 1)))
        n = 400
        sizes = rs.integers(1, 4000, (n, 2))
        sizes[:40] = rs.integers(1, 5, (40, 2))  # tiny images: RandomResizedCrop's fallback branch
        indices = rs.integers(0, 2**62, n)
        seed, epoch = (int(rs.integers(0, 2**63)), int(rs.integers(0, 1000))) if trial else (0, 0)
        boxes, flips = pipe.windows(sizes, indices, seed, epoch)
        for i in range(n):
            rng = sample_rng(seed, epoch, int(indices[i])) if train else None
            box, flip = pipe.window(ImageHeader(int(sizes[i, 0]), int(sizes[i, 1]), True), rng)
            assert tuple(boxes[i]) == tuple(box) and bool(flips[i]) == flip, (i, sizes[i], indices[i])


def test_headers_in_one_call(variants: dict[str, bytes]) -> None:
    datas = [variants["baseline-420"], variants["grayscale"], b"not a jpeg", b""]
    hdr = native.jpeg_headers(datas)
    first = read_header(datas[0])
    assert tuple(hdr[0, :2]) == (first.width, first.height) and hdr[0, 2] == 3 and hdr[0, 3] == 0
    assert hdr[1, 2] == 1 and hdr[1, 3] == 0  # JCS_GRAYSCALE
    assert hdr[2, 3] != 0 and hdr[3, 3] != 0


# -- arguments, threads, processes -------------------------------------------------------------------------------------
def test_bad_arguments_are_refused_clearly(photos: list[bytes]) -> None:
    m = native.require()
    k = m.ImageKernel(1)
    out = np.zeros((2, 3, 8, 8), np.uint8)
    box = np.array([[0, 0, 4, 4]], np.float64)
    flip = np.zeros(1, np.uint8)
    with pytest.raises(ValueError, match="outside out's 2 rows or repeated"):
        k.run([photos[0]], box, flip, out, np.array([2]), True)
    with pytest.raises(ValueError, match="repeated"):
        k.run([photos[0]] * 2, np.repeat(box, 2, 0), np.zeros(2, np.uint8), out, np.array([1, 1]), True)
    with pytest.raises(ValueError, match="must match"):
        k.run([photos[0]] * 2, box, flip, out, np.array([0]), True)
    with pytest.raises(TypeError, match="out must be"):
        k.run([photos[0]], box, flip, np.zeros((2, 3, 8, 8), np.int16), np.array([0]), True)
    with pytest.raises(ValueError, match="needs scale and shift"):
        k.run([photos[0]], box, flip, np.zeros((1, 3, 8, 8), np.float32), np.array([0]), True)
    with pytest.raises(TypeError, match="bytes-like"):
        k.run([12345], box, flip, out, np.array([0]), True)
    with pytest.raises(ValueError, match="threads must be"):
        m.ImageKernel(0)
    k.close()
    k.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        k.run([photos[0]], box, flip, out, np.array([0]), True)


def test_outside_boxes_are_a_status_not_a_crash(photos: list[bytes]) -> None:
    k = native.require().ImageKernel(1)
    out = np.zeros((4, 3, 8, 8), np.uint8)
    boxes = np.array([[-5, 0, 4, 4], [0, 0, 1e9, 4], [3, 3, 3, 4], [np.nan, 0, 4, 4]], np.float64)
    result = k.run([photos[0]] * 4, boxes, np.zeros(4, np.uint8), out, np.arange(4), True)
    k.close()
    assert all(r[0] == native.module().STATUS_BOX for r in result), result


def test_concurrent_callers_get_the_same_pixels(photos: list[bytes]) -> None:
    k = native.require().ImageKernel(3)
    pipe = dataio.ImagePipeline(train=True, size=48)
    n = len(photos)
    sizes = native.jpeg_headers(photos)[:, :2]
    boxes, flips = pipe.windows(sizes, np.arange(n), 7, 0)

    def run() -> np.ndarray:
        out = np.zeros((n, 3, 48, 48), np.uint8)
        assert k.run(photos, boxes, flips, out, np.arange(n), True) == [None] * n
        return out

    want = run()
    got: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: got.append(run())) for _ in range(4)]
    for t in threads:
        t.start()
    k.set_threads(1)  # changing the thread count while batches run
    k.set_threads(4)
    for t in threads:
        t.join()
    assert len(got) == 4 and all(np.array_equal(g, want) for g in got)
    assert k.threads == 4 and k.images >= 5 * n and k.busy_seconds > 0
    k.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_threads(photos: list[bytes]) -> None:
    k = native.require().ImageKernel(2)
    out = np.zeros((1, 3, 16, 16), np.uint8)
    box = np.array([[0, 0, 50, 50]], np.float64)
    args = ([photos[0]], box, np.zeros(1, np.uint8), out, np.zeros(1, np.int64), True)
    assert k.run(*args) == [None]
    pid = os.fork()
    if pid == 0:  # the child: the parent's threads do not exist here
        ok = k.run(*args) == [None] and out.any()
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert k.run(*args) == [None]
    k.close()


# -- hostile bytes -----------------------------------------------------------------------------------------------------
def test_absurd_header_sizes_are_refused_before_allocating(photos: list[bytes]) -> None:
    k = native.require().ImageKernel(1)
    huge = jpeg_with_size(photos[0], 60000, 60000)  # libjpeg itself refuses sides over 65500
    out = np.zeros((1, 3, 8, 8), np.uint8)
    result = k.run([huge], np.array([[0, 0, 60000, 60000]], np.float64), np.zeros(1, np.uint8), out,
                   np.zeros(1, np.int64), False)
    k.close()
    assert result[0][0] == native.module().STATUS_TOO_LARGE and "exceed" in result[0][1]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_jpegs_never_crash_the_process(variants: dict[str, bytes], data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["baseline-420", "progressive", "restart-markers", "grayscale", "odd-size"]))
    raw = bytearray(variants[name])
    for _ in range(data.draw(st.integers(0, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    blob = bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw)
    if data.draw(st.booleans()):
        blob = jpeg_with_size(variants[name], data.draw(st.integers(0, 65535)), data.draw(st.integers(0, 65535)))
    m = native.require()
    out = np.zeros((2, 3, 12, 12), np.float32)
    box = [data.draw(st.floats(0, 400)), data.draw(st.floats(0, 400))]
    box += [box[0] + data.draw(st.floats(0.01, 400)), box[1] + data.draw(st.floats(0.01, 400))]
    k = m.ImageKernel(2)
    result = k.run([blob, blob], np.array([box, box], np.float64), np.array([0, 1], np.uint8), out,
                   np.arange(2), data.draw(st.booleans()), [1, 1, 1], [0, 0, 0])
    k.close()
    for r in result:
        assert r is None or (r[0] in (1, 2, 3, 4, 5) and isinstance(r[1], str))
    hdr = np.zeros((1, 4), np.int32)
    m.jpeg_headers([blob], hdr)
    single = m.decode_into(blob, tuple(box), True, np.zeros((3, 12, 12), np.uint8), False)
    assert single is None or single[0] in (1, 2, 3, 4, 5)


def test_avx2_and_portable_resize_are_bit_identical(photos: list[bytes]) -> None:
    m = native.require()
    pipe = dataio.ImagePipeline(train=True, size=57)
    n = len(photos)
    boxes, flips = pipe.windows(native.jpeg_headers(photos)[:, :2], np.arange(n), 1, 2)
    k = m.ImageKernel(2)
    outs = []
    try:
        for enabled in (True, False):
            m.simd(enabled)
            for dtype in (np.uint8, np.float32):
                out = np.zeros((n, 3, 57, 57), dtype)
                assert k.run(photos, boxes, flips, out, np.arange(n), True, [0.5, 1, 2], [0, -1, 1]) == [None] * n
                outs.append(out)
    finally:
        m.simd(True)
        k.close()
    assert np.array_equal(outs[0], outs[2]) and np.array_equal(outs[1], outs[3])
