"""Decode → crop → resize → flip of one encoded image, without holding the GIL for the heavy steps.

JPEG (the fast path): ``simplejpeg`` (libjpeg-turbo) decodes at the smallest DCT scale (1/8, 1/4 or 1/2:
the SIMD ones; 3/8, 5/8, … are slower than a full decode) that still leaves at least the output's pixel
count across the crop box. At full scale, torch's uint8 antialiased bilinear resize (Pillow-SIMD's
algorithm, AVX2; within ±1 of ``PIL.Image.resize(BILINEAR)``, ~2-3x faster than Pillow here) resizes the
whole-pixel crop and ``torch.flip`` mirrors the small result; at a reduced scale the box is fractional in
decoded pixels, so Pillow's fused ``resize(box=...)`` does crop + resize exactly. All of these release the
GIL, so decode threads scale with cores. The output stays in CHW memory where torch produced it: the HWC
array returned is then a view of it, so that copying it into a CHW batch is a plain memcpy.

Anything else (PNG, CMYK/YCCK JPEG, JPEGs libjpeg-turbo rejects but PIL reads, grayscale in any format) goes
through ``PIL.Image.open(...).convert("RGB")`` first, as torchvision's loader does, then the same resize.

Damaged and oversized images get the native kernel's verdict, whatever the crop (:mod:`.jpeg_check`):
before decoding, a header over the pixel limit and a JPEG cut before its EOI are refused; a JPEG whose
entropy-coded data ends early (libjpeg-turbo's "premature end of data segment") is refused rather than handed to
PIL, which would fill the missing rows with grey. Other damage libjpeg only warns about decodes the way PIL does.

Two crop semantics, matching the two torchvision pipelines:

- ``crop_first=True`` (``RandomResizedCrop``: crop, then resize the crop): only pixels inside the box
  are used; the box is in whole pixels.
- ``crop_first=False`` (``Resize`` + ``CenterCrop``): the *whole* image is resized so that the box becomes
  ``out_size``, then the box is cut out, so pixels just outside the box weigh in at its edges exactly as
  in torchvision. The box may be fractional (see :func:`dataio.loaders.image.transforms.center_crop_box`).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dataio.errors import DataioError
from dataio.loaders.image.jpeg_check import entropy_ended_early, refusal

try:
    import simplejpeg
except ImportError:  # pragma: no cover - simplejpeg is a dependency; PIL decodes everything without it
    simplejpeg = None

# PIL imports its common format plugins on the first Image.open: do it now, so that no decode thread ever imports
# (a child forked during an import would wait forever on the module's lock; see dataio/_forksafe.py)
Image.preinit()

__all__ = [
    "DecodeError",
    "ImageHeader",
    "dct_factor",
    "decode_crop_resize",
    "decode_rgb",
    "image_size",
    "read_header",
    "window_geometry",
]

_DCT_FACTORS = (8, 4, 2)  # libjpeg-turbo's SIMD-accelerated reduced IDCTs
_SIMPLEJPEG_COLORSPACES = frozenset({"YCbCr", "Gray", "RGB"})  # CMYK/YCCK go through PIL, like torchvision


class DecodeError(DataioError, ValueError):
    """Image bytes that cannot be decoded: corrupt, truncated, or a format PIL does not know."""


@dataclass(frozen=True)
class ImageHeader:
    """What the header of an encoded image says: its size, and whether the JPEG fast path decodes it."""

    width: int
    height: int
    turbo: bool  # a JPEG that simplejpeg decodes to RGB (not CMYK/YCCK)


def read_header(data: bytes | bytearray | memoryview) -> ImageHeader:
    """Parses the header only (no pixel decoding); pass the result on to :func:`decode_crop_resize`.

    Raises:
        DecodeError: The header cannot be read.
    """
    if simplejpeg is not None and bytes(data[:2]) == b"\xff\xd8":
        try:
            height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
            return ImageHeader(int(width), int(height), colorspace in _SIMPLEJPEG_COLORSPACES)
        except ValueError:
            pass  # PIL may still read it (and says why not if it cannot)
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Exception as exc:  # PIL raises a zoo of types (OSError, SyntaxError, struct.error, ...) on bad input
        raise DecodeError(f"cannot read the image header: {exc}") from exc
    return ImageHeader(int(width), int(height), False)


def image_size(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """``(width, height)`` of an encoded image from its header only (no pixel decoding).

    Raises:
        DecodeError: The header cannot be read.
    """
    header = read_header(data)
    return header.width, header.height


def dct_factor(box_w: float, box_h: float, out_w: int, out_h: int) -> int:
    """The largest JPEG DCT downscale ``k`` (8, 4, 2 or 1) leaving >= ``out_w`` × ``out_h`` pixels across the box."""
    for k in _DCT_FACTORS:
        if box_w >= k * out_w and box_h >= k * out_h:
            return k
    return 1


def window_geometry(
    width: int, height: int, box: tuple[float, float, float, float], out_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """For ``crop_first=False``: ``(resized_w, resized_h, left, top)`` such that resizing the whole image to
    ``resized_w`` × ``resized_h`` and cutting ``out_size`` at ``(left, top)`` is the box resized to ``out_size``.

    Inverts :func:`~dataio.loaders.image.transforms.center_crop_box` exactly (it returns torchvision's
    ``Resize`` size and ``CenterCrop`` anchor).
    """
    out_w, out_h = out_size
    left, top, right, bottom = box
    sx, sy = (right - left) / out_w, (bottom - top) / out_h
    rw, rh = max(out_w, round(width / sx)), max(out_h, round(height / sy))
    x0 = min(max(round(left / sx), 0), rw - out_w)
    y0 = min(max(round(top / sy), 0), rh - out_h)
    return rw, rh, x0, y0


def decode_rgb(data: bytes | bytearray | memoryview, factor: int = 1) -> np.ndarray:
    """The whole image as an HWC uint8 RGB array, JPEGs decoded at DCT scale ``1 / factor`` (1, 2, 4 or 8).

    Raises:
        DecodeError: The bytes cannot be decoded.
    """
    if factor not in (1, *_DCT_FACTORS):
        raise ValueError(f"factor must be 1, 2, 4 or 8, got {factor!r}")
    return _decode(data, read_header(data), factor)[0]


def decode_crop_resize(
    data: bytes | bytearray | memoryview,
    box: tuple[float, float, float, float],
    out_size: tuple[int, int],
    flip: bool = False,
    *,
    crop_first: bool = True,
    header: ImageHeader | None = None,
) -> np.ndarray:
    """Decodes ``data``, resizes the ``box`` of it to ``out_size`` (bilinear, antialiased) and optionally mirrors it.

    Args:
        data: Encoded image (JPEG fast path; anything PIL reads otherwise).
        box: ``(left, top, right, bottom)`` in the original image's pixels; inside the image.
        out_size: ``(width, height)`` of the output.
        flip: Mirror the output horizontally.
        crop_first: ``True``: crop then resize (RandomResizedCrop; the box is rounded to whole pixels).
            ``False``: resize the whole image then crop (Resize + CenterCrop; the box may be fractional).
        header: ``read_header(data)`` if the caller has it already (saves parsing it twice).

    Returns:
        ``(out_h, out_w, 3)`` uint8 RGB. Possibly a non-contiguous view (of CHW memory): copy it with
        ``torch.from_numpy(a).permute(2, 0, 1)``, not by forcing it C-contiguous first.

    Raises:
        DecodeError: The bytes cannot be decoded.
        ValueError: A box outside the image, an empty box or a bad output size.
    """
    out_w, out_h = _check_out_size(out_size)
    if header is None:
        header = read_header(data)
    left, top, right, bottom = _check_box(box, header.width, header.height)
    k = dct_factor(right - left, bottom - top, out_w, out_h) if header.turbo else 1
    pixels, fx, fy = _decode(data, header, k)
    if fx != 1.0 or fy != 1.0:  # DCT-scaled: the box is fractional in decoded pixels
        return _resize_box(pixels, (left * fx, top * fy, right * fx, bottom * fy), out_w, out_h, flip, crop_first)
    if crop_first:
        x0, x1 = _span(left, right, pixels.shape[1])
        y0, y1 = _span(top, bottom, pixels.shape[0])
        out = _resize(pixels[y0:y1, x0:x1], out_w, out_h)
    else:
        rw, rh, x0, y0 = window_geometry(header.width, header.height, (left, top, right, bottom), (out_w, out_h))
        out = _resize(pixels, rw, rh)[:, y0 : y0 + out_h, x0 : x0 + out_w]
    if flip:
        out = torch.flip(out, (2,))
    return out.numpy().transpose(1, 2, 0)


def _decode(data: Any, header: ImageHeader, k: int) -> tuple[np.ndarray, float, float]:
    """Pixels at scale ~1/k and the exact factors mapping original coordinates onto them.

    Raises:
        DecodeError: Refused before decoding (:func:`~dataio.loaders.image.jpeg_check.refusal`), entropy-coded data that
            ends early, or bytes neither libjpeg-turbo nor PIL decodes.
    """
    why = refusal(data, header.width, header.height)
    if why is not None:
        raise DecodeError(f"cannot decode the image: {why}")
    if header.turbo:
        try:
            if k > 1:
                min_w, min_h = -(-header.width // k), -(-header.height // k)
                pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=min_h, min_width=min_w)
                dh, dw = pixels.shape[:2]
                fx = 1 / k if dw == min_w else dw / header.width
                fy = 1 / k if dh == min_h else dh / header.height
                return pixels, fx, fy
            return simplejpeg.decode_jpeg(data, colorspace="RGB"), 1.0, 1.0
        except ValueError as exc:
            if entropy_ended_early(str(exc)):  # PIL would fill the rest with grey: refused, as the kernel does
                why = f"its entropy-coded data ends before the {header.width}x{header.height} image does ({exc})"
                raise DecodeError(f"cannot decode the image: {why}") from exc
            turbo_error: ValueError | None = exc  # strict libjpeg-turbo; PIL tolerates recoverable warnings
    else:
        turbo_error = None
    pixels = _pil_rgb(data, turbo_error)
    return pixels, pixels.shape[1] / header.width, pixels.shape[0] / header.height


def _pil_rgb(data: Any, turbo_error: Exception | None) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = im.convert("RGB")
    except Exception as exc:  # see read_header
        why = f"{exc}" if turbo_error is None else f"{turbo_error} (libjpeg-turbo); {exc} (PIL)"
        raise DecodeError(f"cannot decode the image: {why}") from exc
    pixels = np.asarray(rgb)
    return pixels if pixels.flags.writeable else pixels.copy()


def _resize(pixels: np.ndarray, out_w: int, out_h: int) -> torch.Tensor:
    """HWC uint8 → CHW uint8 ``out_h`` × ``out_w``: PIL's antialiased bilinear (torch's AVX2 port of it)."""
    if not pixels.flags.c_contiguous:
        pixels = np.ascontiguousarray(pixels)  # a single-threaded copy of the crop only
    x = torch.from_numpy(pixels[None]).permute(0, 3, 1, 2)  # channels-last NCHW view, no copy
    if x.shape[2] == out_h and x.shape[3] == out_w:
        return x[0]  # nothing to resample: a CHW view of the HWC pixels
    return F.interpolate(x, size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False)[0]


def _resize_box(
    pixels: np.ndarray, box: tuple[float, float, float, float], out_w: int, out_h: int, flip: bool, crop_first: bool
) -> np.ndarray:
    """PIL's fused crop + resize of a fractional box (``Image.resize(box=...)``): for DCT-scaled pixels, where
    rounding the box to whole decoded pixels would shift the crop by up to half a decoded pixel."""
    left, top = max(box[0], 0.0), max(box[1], 0.0)
    right, bottom = min(box[2], pixels.shape[1]), min(box[3], pixels.shape[0])
    if crop_first:  # only the pixels the box touches, so that the filter stops at the box like a crop does
        x0, y0, x1, y1 = math.floor(left), math.floor(top), math.ceil(right), math.ceil(bottom)
        pixels = pixels[y0:y1, x0:x1]
        left, top, right, bottom = left - x0, top - y0, right - x0, bottom - y0
    img = Image.fromarray(pixels).resize((out_w, out_h), Image.Resampling.BILINEAR, box=(left, top, right, bottom))
    if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.array(img)


def _span(lo: float, hi: float, n: int) -> tuple[int, int]:
    """Whole-pixel ``[a, b)`` of the box side ``[lo, hi)``, non-empty and inside ``[0, n)``."""
    a = min(max(round(lo), 0), n - 1)
    b = min(max(round(hi), a + 1), n)
    return a, b


def _check_out_size(out_size: tuple[int, int]) -> tuple[int, int]:
    try:
        out_w, out_h = out_size
    except (TypeError, ValueError):
        raise ValueError(f"out_size must be (width, height), got {out_size!r}") from None
    for v in (out_w, out_h):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"out_size must be two integers >= 1, got {out_size!r}")
    return int(out_w), int(out_h)


def _check_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[float, ...]:
    try:
        left, top, right, bottom = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"box must be (left, top, right, bottom), got {box!r}") from None
    eps = 1e-6 * max(width, height)  # float boxes computed from the image size may overshoot by an ulp
    if not (-eps <= left < right <= width + eps and -eps <= top < bottom <= height + eps) or not all(
        math.isfinite(v) for v in (left, top, right, bottom)
    ):
        raise ValueError(f"box {tuple(box)!r} is empty or outside the {width}x{height} image")
    return left, top, right, bottom
