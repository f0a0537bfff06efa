"""Staged upload files (dataio.storage.staging): removed on success and failure, swept after their owner dies.

Real processes and a real filesystem: a subprocess holds a staged file and is SIGKILLed; uploads go through an
fsspec ``file://`` filesystem whose target cannot be created.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import dataio
from dataio.storage import RetryPolicy, StorageError
from dataio.storage.fsspec_store import FsspecStore
from dataio.storage.staging import StagingError, staged_file, staging_dir, sweep_stale


@pytest.fixture
def tmpdir_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points the system temp directory (what stores stage uploads under) at this test's folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _dead_pid() -> int:
    """A PID no process can have: above the kernel's limit."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def test_staged_file_is_owned_named_and_removed_on_success_and_on_failure(tmp_path: Path) -> None:
    with staged_file("shards/shard-00003.dio", base=tmp_path) as path:
        assert path.parent == staging_dir(tmp_path) and path.exists()
        assert path.name.startswith(f"{os.getpid()}.") and "shard-00003.dio" in path.name
        path.write_bytes(b"x" * 100)
    assert not path.exists()
    assert oct(staging_dir(tmp_path).stat().st_mode & 0o777) == oct(0o700)
    with pytest.raises(RuntimeError, match="writer broke"), staged_file("x", base=tmp_path) as path:
        path.write_bytes(b"partial")
        raise RuntimeError("writer broke")
    assert not path.exists() and list(staging_dir(tmp_path).iterdir()) == []


def test_a_staging_directory_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / f"dataio-staging-{os.getuid()}").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StagingError, match="a symlink"), staged_file("x", base=tmp_path):
        pass


def test_uploads_are_staged_in_the_staging_directory_and_a_failed_upload_leaves_nothing(tmpdir_here: Path) -> None:
    blocker = tmpdir_here / "blocker"
    blocker.write_bytes(b"a file where the upload needs a directory")
    store = FsspecStore(f"file://{blocker}/ds", retry=RetryPolicy(max_attempts=1))
    with pytest.raises(StorageError, match=r"shard-00000\.dio \(upload of 5 bytes\)"):  # noqa: SIM117
        with store.open_atomic("shards/shard-00000.dio") as f:
            f.write(b"bytes")
            staged = list(staging_dir().iterdir())
            assert len(staged) == 1 and staged[0].name.startswith(f"{os.getpid()}.")
    assert list(staging_dir().iterdir()) == []
    assert not [p for p in tmpdir_here.iterdir() if p.name.startswith("dataio-upload-")]


_HOLDER = """
import sys, time
from dataio.storage.staging import staged_file
with staged_file("shards/shard-00001.dio", base=sys.argv[1]) as path:
    path.write_bytes(b"half an upload")
    print(path, flush=True)
    time.sleep(3600)
"""


def test_a_killed_owner_s_file_is_swept_a_live_one_is_not(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(dataio.__file__).parents[1])}  # this checkout's dataio
    cmd = [sys.executable, "-c", _HOLDER, str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        staged = Path(proc.stdout.readline().strip())  # type: ignore[union-attr]
        assert staged.exists(), proc.communicate(timeout=60)
        assert sweep_stale(tmp_path) == [] and staged.exists()  # its owner lives
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert staged.exists()  # SIGKILL: nothing cleaned up behind it
    assert sweep_stale(tmp_path) == [staged] and not staged.exists()


def test_a_file_with_a_dead_pid_is_swept_unless_someone_holds_its_lock(tmp_path: Path) -> None:
    root = staging_dir(tmp_path)
    dead = root / f"{_dead_pid()}.0123abcd.shard-00002.dio.part"
    held = root / f"{_dead_pid()}.89abcdef.shard-00004.dio.part"  # e.g. a live owner in another PID namespace
    other = root / "notes.txt"  # not a staged file's name: left alone
    for p in (dead, held, other):
        p.write_bytes(b"x")
    with open(held, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        assert sweep_stale(tmp_path) == [dead]
    assert held.exists() and other.exists() and not dead.exists()


def test_the_first_staged_file_of_a_process_and_pack_sweep_stale_files(
    tmpdir_here: Path, synth_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataio.pack import PackOptions, pack
    from dataio.storage import staging

    stale = staging_dir() / f"{_dead_pid()}.0123abcd.index.parquet.part"
    stale.write_bytes(b"x")
    pack(synth_dir, "memory://dataio-staging-test/ds", PackOptions(shard_size=400_000))
    assert not stale.exists()
    stale.write_bytes(b"x")
    monkeypatch.setattr(staging, "_swept_in", set())  # as in a fresh process
    with staged_file("x"):
        assert not stale.exists()
