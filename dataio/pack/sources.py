"""Enumerating source files without reading them: image folders, tar archives (also nested), file lists.

Every source becomes a list of :class:`RawFile` — a relative name plus a byte range of a local file — so a
sample inside a tar archive is read with one ``pread`` at its offset: nothing is extracted to disk, and
several worker processes can read one archive at once.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dataio.errors import PackError

__all__ = ["IMG_EXTENSIONS", "RawFile", "is_image_name", "scan_folder", "scan_tar"]

#: The extensions torchvision's ImageFolder accepts (compared case-insensitively).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


@dataclass(frozen=True)
class RawFile:
    """A source file: ``relpath`` (POSIX, relative to the source root) stored at ``[offset, offset+size)`` of
    the local file ``path`` (the file itself, or the tar archive holding it)."""

    relpath: str
    path: str
    offset: int
    size: int


def scan_folder(root: str | os.PathLike[str]) -> list[RawFile]:
    """Lists every image file below ``root`` (following symlinks like torchvision's ImageFolder)."""
    base = Path(root)
    if not base.is_dir():
        raise PackError(f"{base}: not a directory")
    out = []
    for dirpath, _dirs, files in os.walk(base, followlinks=True):
        rel_dir = Path(dirpath).relative_to(base).as_posix()
        for name in files:
            if is_image_name(name):
                path = os.path.join(dirpath, name)
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                out.append(RawFile(rel, path, 0, os.stat(path).st_size))
    return out


class _Window:
    """A read-only, seekable view of ``[start, start+size)`` of an open file (for tars inside tars)."""

    def __init__(self, f: BinaryIO, start: int, size: int) -> None:
        self._f, self._start, self._size, self._pos = f, start, size, 0

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        n = self._size - self._pos if n is None or n < 0 else min(n, self._size - self._pos)
        self._f.seek(self._start + self._pos)
        data = self._f.read(max(0, n))
        self._pos += len(data)
        return data


def _members(fileobj: BinaryIO, where: str) -> list[tarfile.TarInfo]:
    try:
        with tarfile.open(fileobj=fileobj, mode="r:") as tf:  # type: ignore[call-overload]
            return [m for m in tf.getmembers() if m.isreg()]
    except tarfile.ReadError as exc:
        raise PackError(f"{where}: not an uncompressed tar archive ({exc}); decompress it first") from exc


def scan_tar(path: str | os.PathLike[str]) -> list[RawFile]:
    """Lists the images in a tar archive; member tars (ILSVRC2012_img_train.tar holds one per class) are
    opened in place and their images listed as ``<inner tar stem>/<name>``.

    Only headers are read (the data is seeked over), so listing a 140 GB archive reads a few MB.
    """
    tar_path = os.fspath(path)
    out = []
    with open(tar_path, "rb") as f:
        for m in _members(f, tar_path):
            name = m.name.lstrip("./")
            if name.lower().endswith(".tar"):
                stem = Path(name).stem
                inner = _members(_Window(f, m.offset_data, m.size), f"{tar_path}:{name}")  # type: ignore[arg-type]
                for im in inner:
                    if is_image_name(im.name):
                        rel = f"{stem}/{Path(im.name).name}"
                        out.append(RawFile(rel, tar_path, m.offset_data + im.offset_data, im.size))
            elif is_image_name(name):
                out.append(RawFile(name, tar_path, m.offset_data, m.size))
    return out
