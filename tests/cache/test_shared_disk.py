"""The cache on a disk shared by the node's users (issue 19 items 4 and 5): an entry another user planted
below the cache directory (a symlinked folder, a symlinked lock file, a FIFO) is never followed, never opened
blocking, never written through; only names the cache creates are deleted.

Each scenario plants the entry in a real cache directory, runs the cache for real (reads of a packed dataset,
the stale-temp sweep, the plans, ``dataio cache stats|clear`` in a child process) and checks that a victim
folder outside the cache, holding files named like the cache's own, is byte for byte unchanged.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dataio.cache import CachedStore, clear_cache, inspect_cache
from dataio.cache.safedir import UnsafeCacheEntry
from dataio.storage import LocalStore
from tests.cache.remotes import shard_table
from tests.helpers import run_with_timeout

#: Names the cache itself would create or delete, and a few others.
VICTIM_FILES = {
    "0123456789ab-1-deadbeef.part": b"a temp-like file",
    "stale.part": b"part",
    "0123456789abcdef.json": b'{"not": "a plan"}',
    "0123456789abcdef.alive": b"alive",
    "0123456789abcdef.owner.pos": b"{}",
    "0123456789abcdef0123.lock": b"lock",
    "cache.lock": b"global",
    "shard-000.dio.0123456789abcdef": b"shard-like",
    "precious.txt": b"the victim's own data",
}


def _snapshot(folder: Path) -> dict[str, tuple[str, bytes]]:
    out = {}
    for dirpath, dirs, files in os.walk(folder):
        for n in dirs + files:
            p = Path(dirpath, n)
            mode = p.lstat().st_mode
            kind = {stat.S_IFLNK: "link", stat.S_IFDIR: "dir", stat.S_IFREG: "file"}.get(stat.S_IFMT(mode), "other")
            blob = os.readlink(p).encode() if kind == "link" else p.read_bytes() if kind == "file" else b""
            out[p.relative_to(folder).as_posix()] = (kind, blob)
    return out


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    folder = tmp_path / "victim"
    folder.mkdir()
    for name, blob in VICTIM_FILES.items():
        (folder / name).write_bytes(blob)
    os.mkfifo(folder / "pipe")
    return folder


def _store(packed: Path, cache: Path, **kw: object) -> CachedStore:
    return CachedStore(LocalStore(str(packed)), cache, 10**9, shard_table(packed), prefetch=0, **kw)  # type: ignore[arg-type]


def _plant(packed: Path, cache: Path, folder: str, target: Path) -> CachedStore:
    """A cache that ran once (folders made), with ``<dataset>/<folder>`` replaced by a symlink to ``target``."""
    _store(packed, cache).close()
    store = _store(packed, cache)
    place = Path(store.layout.base, folder)
    if place.is_dir() and not place.is_symlink():
        for f in place.iterdir():
            f.unlink()
        place.rmdir()
    elif place.exists():
        place.unlink()
    place.symlink_to(target)
    return store


def _read_all(store: CachedStore, packed: Path) -> None:
    for p in sorted(shard_table(packed)):
        assert run_with_timeout(lambda p=p: store.read(p)) == (packed / p).read_bytes()


@pytest.mark.parametrize("folder", ["tmp", "plans", "locks", "data"])
def test_a_symlinked_cache_folder_is_never_followed(packed: Path, tmp_path: Path, victim: Path, folder: str) -> None:
    before = _snapshot(victim)
    store = _plant(packed, tmp_path / "cache", folder, victim)
    store.set_access_order(sorted(shard_table(packed)))  # a plan: written to plans/, read back by the sweep
    _read_all(store, packed)  # each read: the stale-temp sweep, a download lock, a temp file, a rename
    assert _snapshot(victim) == before
    if folder != "plans":  # a plan is a hint: without plans/ the cache works on (nothing read from the victim)
        assert store.stats().fallbacks > 0  # served from the remote store, not through the link
    store.close()
    assert _snapshot(victim) == before


def test_a_symlinked_global_lock_file_is_not_created_through(packed: Path, tmp_path: Path, victim: Path) -> None:
    before = _snapshot(victim)
    store = _plant(packed, tmp_path / "cache", "cache.lock", victim / "created-by-the-cache")
    _read_all(store, packed)
    assert _snapshot(victim) == before  # no file created at the link's target
    assert store.stats().fallbacks == len(shard_table(packed))
    store.close()


def test_a_symlinked_folder_found_at_open_is_refused(packed: Path, tmp_path: Path, victim: Path) -> None:
    before = _snapshot(victim)
    store = _plant(packed, tmp_path / "cache", "tmp", victim)
    store.close()
    where = Path(store.layout.tmp_dir)
    with pytest.raises(UnsafeCacheEntry, match=rf"{where}: is a symlink.*remove {where}"):
        _store(packed, tmp_path / "cache")
    assert _snapshot(victim) == before


def test_a_symlinked_dataset_folder_is_refused_at_open(packed: Path, tmp_path: Path, victim: Path) -> None:
    cache = tmp_path / "cache"
    store = _store(packed, cache)
    base = Path(store.layout.base)
    store.close()
    for f in sorted(base.rglob("*"), reverse=True):
        f.rmdir() if f.is_dir() else f.unlink()
    base.rmdir()
    base.symlink_to(victim)
    before = _snapshot(victim)
    with pytest.raises(UnsafeCacheEntry, match=rf"{base}.*a symlink.*remove {base}"):
        _store(packed, cache)
    assert _snapshot(victim) == before


def test_cache_clear_and_stats_never_follow_links_nor_delete_foreign_names(
    packed: Path, tmp_path: Path, victim: Path
) -> None:
    cache = tmp_path / "cache"
    other = tmp_path / "victim2"
    other.mkdir()
    for name, blob in VICTIM_FILES.items():
        (other / name).write_bytes(blob)
    store = _store(packed, cache)
    _read_all(store, packed)
    store.close()
    base = Path(store.layout.base)
    shard_dir = next(p for p in (base / "data").iterdir() if p.is_dir())
    (shard_dir / "linked").symlink_to(victim, target_is_directory=True)  # a symlinked folder among the shards
    (base / "locks" / "0123456789abcdef0123.lock").symlink_to(victim / "0123456789abcdef0123.lock")
    (base / "tmp" / "foreign.txt").write_bytes(b"someone else's")
    os.mkfifo(base / "tmp" / "0123456789ab-2-deadbeef.part")
    (cache / "planted-dataset").symlink_to(other, target_is_directory=True)  # looks like a dataset folder
    (other / "data").mkdir()
    (other / "data" / "x.0123456789abcdef").write_bytes(b"shard-like")
    before, before_other = _snapshot(victim), _snapshot(other)

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for action in ("stats", "clear"):
        out = subprocess.run(
            [sys.executable, "-m", "dataio", "cache", action, str(cache)],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "left alone" in out.stdout and "foreign.txt" in out.stdout and "planted-dataset" in out.stdout
    assert _snapshot(victim) == before and _snapshot(other) == before_other
    assert (base / "tmp" / "foreign.txt").read_bytes() == b"someone else's"  # not the cache's: kept
    assert (base / "locks" / "0123456789abcdef0123.lock").is_symlink()  # not a lock the cache made: kept
    assert not list((base / "data").rglob("*.dio.*"))  # the cache's own shards are cleared
    assert [u.shards for u in inspect_cache(cache)] == [0]
    assert clear_cache(cache).left_alone


def test_fifos_in_tmp_and_plans_never_hang_a_reader(packed: Path, tmp_path: Path) -> None:
    """Item 5: every name a scan or the plans read opens, a FIFO: reads, the sweep, stats and clear go on."""
    cache = tmp_path / "cache"
    store = _store(packed, cache)
    layout = store.layout
    fifos = [
        Path(layout.tmp_dir, "0123456789ab-1-deadbeef.part"),
        Path(layout.plans_dir, "0123456789abcdef.alive"),
        Path(layout.plans_dir, "0123456789abcdef.owner.pos"),
        Path(layout.plans_dir, "fedcba9876543210.json"),
        Path(layout.plans_dir, "fedcba9876543210.alive"),
    ]
    Path(layout.plans_dir, "0123456789abcdef.json").write_text('{"id": "x"}')
    Path(layout.plans_dir, "1111222233334444.json").write_text("{}")  # a dead plan, removed by the sweep...
    Path(layout.plans_dir, "1111222233334444.1-abcdef.pos").mkdir()  # ...except a folder at one of its names
    for f in fifos:
        os.mkfifo(f)
    store.set_access_order(sorted(shard_table(packed)))
    _read_all(store, packed)
    assert store.stats().fallbacks == 0  # the cache worked around them
    assert run_with_timeout(lambda: inspect_cache(cache))[0].shards == len(shard_table(packed))
    store.close()
    report = run_with_timeout(lambda: clear_cache(cache))
    assert report.removed == len(shard_table(packed))
    assert all(f.exists() for f in fifos)  # left alone: not regular files
    assert not Path(layout.plans_dir, "1111222233334444.json").exists()
    assert Path(layout.plans_dir, "1111222233334444.1-abcdef.pos").is_dir()
