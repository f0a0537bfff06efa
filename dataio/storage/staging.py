"""Local staging files for uploads: a store that uploads whole files writes each object to a staged file first.

Every staged file lives in one dataio directory under the system temp directory (``<tmp>/dataio-staging-<uid>``,
mode 0700, refused if it is a symlink or owned by another user), is named after its owner process and its
destination (``<pid>.<random>.<name>.part``), and is ``flock``-ed by its owner for as long as it exists::

    with staged_file("shards/shard-00003.dio") as path:
        with open(path, "wb") as f:
            f.write(data)
        upload(path)
    # removed here, whether the block succeeded or raised

A killed owner (SIGKILL, OOM killer, power loss of a container) cannot remove its file, but the kernel drops its
lock. :func:`sweep_stale` removes every staged file whose lock is free and whose owner PID is dead; it runs on the
first :func:`staged_file` of each process and when ``pack`` starts. A live process's file is never removed: it
holds the lock (even when its PID is not visible here, from another PID namespace sharing the directory).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["StagingError", "staged_file", "staging_dir", "sweep_stale"]

_NAME = re.compile(r"^(?P<pid>\d+)\.[0-9a-f]{8}\..*\.part$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_swept_in: set[int] = set()  # PIDs of the processes whose first staged_file swept already (a fork sweeps again)
_swept_lock = threading.Lock()


class StagingError(OSError):
    """The staging directory is unusable (not a directory, a symlink, or another user's)."""


def staging_dir(base: str | os.PathLike[str] | None = None) -> Path:
    """The staging directory under ``base`` (default: the system temp directory), created if missing."""
    root = Path(base if base is not None else tempfile.gettempdir()) / f"dataio-staging-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(root, 0o700)
    st = os.lstat(root)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        what = "a symlink" if stat.S_ISLNK(st.st_mode) else "another user's" if stat.S_ISDIR(st.st_mode) else "a file"
        raise StagingError(
            f"{root}: the dataio upload staging directory is {what}, not this user's directory; "
            "remove it, or point TMPDIR elsewhere"
        )
    return root


def _describe(dest: str) -> str:
    """A file-name-safe, short form of ``dest`` (its last path component), for people looking at the directory."""
    tail = dest.rstrip("/").rsplit("/", 1)[-1]
    return _UNSAFE.sub("_", tail)[-80:] or "upload"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_if_stale(path: Path) -> bool:
    m = _NAME.match(path.name)
    if m is None or _pid_alive(int(m.group("pid"))):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):  # removed meanwhile, or a symlink (not a staged file)
            return False
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its owner lives (in another PID namespace)
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def sweep_stale(base: str | os.PathLike[str] | None = None) -> list[Path]:
    """Removes the staged files of dead processes; returns the paths removed."""
    root = staging_dir(base)
    return [p for p in sorted(root.iterdir()) if _remove_if_stale(p)]


def _sweep_once(base: str | os.PathLike[str] | None) -> None:
    with _swept_lock:
        if os.getpid() in _swept_in:
            return
        _swept_in.add(os.getpid())
    sweep_stale(base)


@contextlib.contextmanager
def staged_file(dest: str, *, base: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Creates an empty, locked staged file for an upload to ``dest``; yields its path; removes it on exit.

    Args:
        dest: Where the bytes go (a relative path or URL); its last component names the file (no credentials:
            pass a path, not a URL with secrets in it).
        base: Parent of the staging directory (default: the system temp directory).
    """
    _sweep_once(base)
    root = staging_dir(base)
    path = root / f"{os.getpid()}.{secrets.token_hex(4)}.{_describe(dest)}.part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)
