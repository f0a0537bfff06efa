"""Cheap validation of encoded images and the optional re-encode (shrink the long side, set JPEG quality).

Validation reads headers and trailers only — never a full decode — so packing stays IO-bound: the JPEG
header must parse (libjpeg-turbo via simplejpeg) and the data must end with an EOI marker (a truncated
download is the common failure); PNG must end with its IEND chunk; other formats are recognised by magic.
"""

from __future__ import annotations

import io

__all__ = ["check_image", "reencode"]

_MAGIC = {
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"GIF87a": "gif",
    b"GIF89a": "gif",
    b"BM": "bmp",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
    b"P5": "pgm",
    b"P6": "ppm",
}


def image_format(data: bytes) -> str | None:
    """The format named by the leading magic bytes, or ``None``."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, name in _MAGIC.items():
        if data.startswith(magic):
            return name
    return None


def check_image(data: bytes) -> str | None:
    """Returns why ``data`` is not a usable image, or ``None`` if it looks intact."""
    if not data:
        return "empty file"
    kind = image_format(data)
    if kind is None:
        return f"not a recognised image format (starts with {data[:8]!r})"
    if kind == "jpeg":
        import simplejpeg

        try:
            simplejpeg.decode_jpeg_header(data)
        except ValueError as exc:
            return f"corrupt JPEG header: {exc}"
        if b"\xff\xd9" not in data[-4096:]:
            return "truncated JPEG (no end-of-image marker)"
    elif kind == "png" and b"IEND" not in data[-64:]:
        return "truncated PNG (no IEND chunk)"
    return None


def reencode(data: bytes, max_size: int | None, quality: int | None) -> bytes:
    """Shrinks the long side to ``max_size`` (never enlarges) and re-encodes as JPEG.

    An image already within ``max_size`` keeps its original bytes unless ``quality`` is given (no needless
    generation loss). JPEG inputs are decoded at a reduced DCT scale when that still covers the target size.
    Deterministic: the same bytes and options give the same output.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        scale = min(1.0, max_size / max(w, h)) if max_size else 1.0
        if scale == 1.0 and quality is None:
            return data
        target = (max(1, round(w * scale)), max(1, round(h * scale)))
        if im.format == "JPEG":
            im.draft("RGB", target)
        rgb = im.convert("RGB")
        if rgb.size != target:
            rgb = rgb.resize(target, Image.Resampling.BICUBIC, reducing_gap=3.0)
        out = io.BytesIO()
        rgb.save(out, format="JPEG", quality=quality or 90)
        return out.getvalue()
