"""Enumerating source files without reading them: image folders, tar archives (also nested), file lists.

Every source becomes a list of :class:`RawFile` — a relative name plus a byte range of a local file — so a
sample inside a tar archive is read with one ``pread`` at its offset: nothing is extracted to disk, and
several worker processes can read one archive at once.

A sample's key is its relative name, stored as UTF-8 text: :func:`utf8_names` sets apart the files whose names
are not UTF-8 (Python lists them with surrogate escapes, which no UTF-8 text holds), each named with its bytes
shown as ``\\xff`` escapes (:func:`printable`), for pack to refuse or skip.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dataio.errors import PackError

__all__ = [
    "IMG_EXTENSIONS",
    "NOT_UTF8",
    "RawFile",
    "display_path",
    "is_image_name",
    "printable",
    "refuse_special",
    "scan_folder",
    "scan_tar",
    "special_reason",
    "utf8_names",
]

log = logging.getLogger("dataio.pack")
#: Why a file with a non-UTF-8 name is refused or skipped.
NOT_UTF8 = "file name is not valid UTF-8 (sample keys are UTF-8 text): rename it, e.g. with convmv"

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


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
_FOLLOW_HINT = "pass --follow-symlinks (PackOptions(follow_symlinks=True)) to read what the links point at"


def special_reason(path: str | os.PathLike[str], follow_symlinks: bool) -> str | None:
    """Why pack refuses the source file ``path``, or ``None`` if it is a regular file it may read.

    A symlink is refused unless ``follow_symlinks``; what is not a regular file (a FIFO hangs a reader, a device
    such as ``/dev/zero`` never ends, a socket) is always refused, also behind a followed link.
    """
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            if not follow_symlinks:
                return "is a symbolic link"
            st = os.stat(path)
    except OSError:
        return None  # missing or unreadable: the read reports it (or --on-error skip records it)
    if stat.S_ISREG(st.st_mode):
        return None
    kind = _KINDS.get(stat.S_IFMT(st.st_mode), "a directory" if stat.S_ISDIR(st.st_mode) else "a special file")
    return f"is not a regular file ({kind}); pack reads regular files only"


def refuse_special(refused: list[tuple[str, str]]) -> None:
    """Raises :class:`PackError` listing every refused source file (none: returns)."""
    if not refused:
        return
    shown = "; ".join(f"{p}: {r}" for p, r in refused[:5])
    more = f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""
    hint = f"; {_FOLLOW_HINT}" if any(r == "is a symbolic link" for _, r in refused) else ""
    raise PackError(f"{len(refused)} source files refused: {shown}{more}{hint}", refused)


def printable(path: str) -> str:
    """``path`` with the bytes of a non-UTF-8 name shown as ``\\xff`` escapes (as text any log or JSON holds)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def display_path(path: str, offset: int, name: str) -> str:
    """How pack names a source file in errors, warnings and the manifest's ``skipped``: its path, or
    ``archive:member`` for a member of a tar archive (``offset > 0``), printable (:func:`printable`)."""
    return printable(path if offset == 0 else f"{path}:{name}")


def utf8_names(files: list[RawFile]) -> tuple[list[RawFile], list[tuple[str, str]]]:
    """Splits ``files`` into those with UTF-8 names and ``(printable path, reason)`` of the others."""
    ok: list[RawFile] = []
    bad: list[tuple[str, str]] = []
    for f in files:
        try:
            f.relpath.encode()
        except UnicodeEncodeError:
            bad.append((display_path(f.path, f.offset, f.relpath), NOT_UTF8))
            continue
        ok.append(f)
    return ok, bad


def _prune_loops(dirpath: str, dirs: list[str], above: dict[str, frozenset[tuple[int, int]]], loops: list[str]) -> None:
    """Drops from ``dirs`` (in place, so ``os.walk`` does not descend) every folder that is ``dirpath`` or one of
    the folders above it, by (device, inode): a symlink loop. ``above`` maps each folder still to be walked to the
    identities of the folders on its path."""
    st = os.stat(dirpath)
    mine = above.pop(dirpath, frozenset()) | {(st.st_dev, st.st_ino)}
    keep = []
    for d in dirs:
        path = os.path.join(dirpath, d)
        try:
            st = os.stat(path)
        except OSError:  # gone or turned into a loop since os.walk listed it
            st = None
        if st is None or (st.st_dev, st.st_ino) in mine:
            loops.append(path)
            log.warning("%s: a symbolic link loop (it leads back to a folder above it); not followed", printable(path))
            continue
        above[path] = mine
        keep.append(d)
    dirs[:] = keep


def _stat_size(path: str, loops: list[str], refused: list[tuple[str, str]]) -> int | None:
    """Size of the source file ``path``, or ``None`` after recording why it cannot be read (a loop, or a dangling
    link: what a followed link points at may be gone)."""
    try:
        return os.stat(path).st_size
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            loops.append(path)
            log.warning("%s: a symbolic link loop; not followed", printable(path))
        else:
            refused.append((path, f"cannot be read ({exc.strerror}); a dangling symbolic link?"))
        return None


def scan_folder(
    root: str | os.PathLike[str], *, follow_symlinks: bool = False, loops: list[str] | None = None
) -> list[RawFile]:
    """Lists every image file below ``root``.

    Symlinked files and folders below ``root`` are refused unless ``follow_symlinks`` (then followed, like
    torchvision's ImageFolder, except that a link leading back to a folder above it — a loop, recognised by
    (device, inode) — is not followed, logged as a warning and appended to ``loops``); FIFOs, devices and sockets
    with image names are always refused. ``root`` itself may be a symlink.

    Raises:
        PackError: naming every refused path (``bad_items``), or if ``root`` is not a directory.
    """
    base = Path(root)
    if not base.is_dir():
        raise PackError(f"{base}: not a directory")
    out = []
    refused: list[tuple[str, str]] = []
    loops = [] if loops is None else loops
    above: dict[str, frozenset[tuple[int, int]]] = {}
    for dirpath, dirs, files in os.walk(base, followlinks=follow_symlinks):
        rel_dir = Path(dirpath).relative_to(base).as_posix()
        if follow_symlinks:
            _prune_loops(dirpath, dirs, above, loops)
        else:
            refused += [
                (os.path.join(dirpath, d), "is a symbolic link")
                for d in dirs
                if os.path.islink(os.path.join(dirpath, d))
            ]
        for name in files:
            if is_image_name(name):
                path = os.path.join(dirpath, name)
                reason = special_reason(path, follow_symlinks)
                if reason is not None:
                    refused.append((path, reason))
                    continue
                size = _stat_size(path, loops, refused)
                if size is not None:
                    rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                    out.append(RawFile(rel, path, 0, size))
    refuse_special(sorted((printable(p), r) for p, r in refused))
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
