"""Writing into a local pack output without following a symlink below it, and journaling every temp file.

Every write of pack into a local output goes through :class:`OwnedDir`:

* The output directory itself is opened as given (it is what the user named, a symlink included); every folder
  below it (``shards/``, ``.dataio-pack/``) is opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to its parent's
  descriptor, or created there with ``mkdir``. A symlink (or a non-directory) in its place raises
  :class:`~dataio.errors.PackError` naming it: pack never writes through a link inside its output.
* A file is written to a temp name beside its target (``.<name>.tmp-<pid>-<hex8>``), created with
  ``O_CREAT | O_EXCL | O_NOFOLLOW`` in the folder's descriptor, and renamed over the target with
  ``os.rename(src_dir_fd=, dst_dir_fd=)``: a rename replaces a directory entry and never follows a link there.
* Before a temp file is created, its path is appended to this process's journal
  ``.dataio-pack/temps-<pid>-<hex8>.log`` (one line, one ``write`` on an ``O_APPEND`` descriptor). The journal is
  pack's proof that it created the temp file: the next pack into the output deletes the temp files a journal
  names (a killed pack leaves them), and no other temp-like file.
* Deletes use ``unlink(dir_fd=)`` on a folder opened without following links.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dataio.errors import PackError
from dataio.format.manifest import check_relative_path

__all__ = ["JOURNAL_PREFIX", "PROGRESS_DIR", "OwnedDir", "make_folder", "open_folder", "temp_name"]

PROGRESS_DIR = ".dataio-pack"
JOURNAL_PREFIX = "temps-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def temp_name(name: str) -> str:
    """The temp name pack writes ``name`` under before renaming it into place."""
    return f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _refuse(where: Path, what: str) -> PackError:
    return PackError(
        f"output folder {where}: is {what}; dataio pack writes only into real directories below its output and "
        "never follows a link there: replace it with a directory, or pack into a new output"
    )


def open_folder(root: Path, folder: str, *, create: bool) -> int | None:
    """Descriptor of ``root/folder``, reached without following a link below ``root`` (``root`` itself may be a
    link: it is what the user named); ``None`` if it is missing and not ``create``.

    Raises:
        PackError: naming the component that is a symlink or not a directory.
    """
    fd = os.open(root, _DIR_FLAGS)
    where = root
    try:
        for part in check_relative_path(folder).split("/") if folder else []:
            where = where / part
            try:
                sub = os.open(part, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    return None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
                sub = os.open(part, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refuse(where, "a symbolic link" if os.path.islink(where) else "not a directory") from None
                raise
            os.close(fd)
            fd = sub
        out, fd = fd, -1
        return out
    finally:
        if fd >= 0:
            os.close(fd)


def make_folder(root: Path, folder: str) -> int:
    """:func:`open_folder`, creating the missing folders (the output itself as given, with its parents)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = open_folder(root, folder, create=True)
    if fd is None:  # create=True creates what is missing
        raise PackError(f"output folder {root / folder}: could not be created")
    return fd


class OwnedDir:
    """pack's writer for a local output directory (see the module docstring). One per process and output."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self._root = Path(os.fspath(root).removeprefix("file://")).expanduser()
        self._fsync = fsync
        self._journal: int | None = None
        self.journal_path: str | None = None

    def _split(self, path: str) -> tuple[str, str]:
        folder, _, name = check_relative_path(path).rpartition("/")
        return folder, name

    def _note(self, temp_path: str) -> None:
        """Appends ``temp_path`` to this process's journal (creating it), before the temp file exists."""
        if self._journal is None:
            dfd = make_folder(self._root, PROGRESS_DIR)
            try:
                name = f"{JOURNAL_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}.log"
                self._journal = os.open(name, _NEW_FILE | os.O_APPEND, 0o666, dir_fd=dfd)
                self.journal_path = f"{PROGRESS_DIR}/{name}"
            finally:
                os.close(dfd)
        os.write(self._journal, f"{temp_path}\n".encode())

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[BinaryIO]:
        """Writes ``path``: the file appears (replacing the entry there) only when the block exits without error."""
        folder, name = self._split(path)
        dfd = make_folder(self._root, folder)
        tmp = temp_name(name)
        try:
            self._note(f"{folder}/{tmp}" if folder else tmp)
            fd = os.open(tmp, _NEW_FILE, 0o666, dir_fd=dfd)
            try:
                with os.fdopen(fd, "wb") as f:
                    yield f
                    f.flush()
                    if self._fsync:
                        os.fsync(f.fileno())
                os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=dfd)
        finally:
            os.close(dfd)

    def write_bytes(self, path: str, data: bytes) -> None:
        """Atomically writes a whole file."""
        with self.open_atomic(path) as f:
            f.write(data)

    def delete(self, path: str) -> None:
        """Removes the directory entry ``path`` (a link is removed, never followed); a missing one is ignored."""
        folder, name = self._split(path)
        dfd = open_folder(self._root, folder, create=False)
        if dfd is None:
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dfd)
        finally:
            os.close(dfd)

    def close(self) -> None:
        """Closes the journal (it stays on disk until the next tidy). Idempotent."""
        if self._journal is not None:
            os.close(self._journal)
            self._journal = None
