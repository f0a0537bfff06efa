"""Several real processes sharing one cache directory, one of them SIGKILLed in the middle of a download."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

from dataio.cache import CachedStore, clear_cache, inspect_cache
from dataio.cache.locks import is_locked
from dataio.cache.plans import load_plans
from dataio.storage import open_store
from tests.cache.remotes import (
    CountingStore,
    hang_mid_download,
    publish_plan_and_wait,
    read_everything,
    rerun_check,
    shard_table,
    verify_cache_dir,
)

SPAWN = multiprocessing.get_context("spawn")


def inflight(store: CachedStore) -> list[str]:
    return store._engine.state.inflight_paths()


def test_killed_downloader_leaves_no_torn_shard_and_no_stale_lock(packed: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shards = shard_table(packed)
    paths = sorted(shards)
    hang = paths[1]
    stuck = SPAWN.Event()
    victim = SPAWN.Process(target=hang_mid_download, args=(str(packed), str(cache), hang, stuck))
    victim.start()
    try:
        assert stuck.wait(30), "the victim never started its download"
        # the victim holds the shard's download lock and a half-written temp file
        survivor = CachedStore(CountingStore(str(packed)), cache, 10**9, shards, prefetch=2)
        layout = survivor.layout
        assert [u.downloading for u in inspect_cache(cache)] == [1]
        assert is_locked(layout.download_lock(layout.shard_name(hang, shards[hang][1])))
        survivor.set_access_order(paths)  # the survivor fills the cache meanwhile, hang included
        got: dict[str, bytes] = {}
        reader = threading.Thread(target=lambda: got.update({hang: survivor.read(hang)}))
        reader.start()
        deadline = time.monotonic() + 20
        while hang not in inflight(survivor) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert hang in inflight(survivor) and reader.is_alive()  # it cannot finish while the victim holds the lock
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(20)
        reader.join(30)
        assert not reader.is_alive(), "the survivor is still blocked by the dead process's lock"
    finally:
        if victim.is_alive():
            victim.kill()
    assert victim.exitcode == -signal.SIGKILL
    assert got[hang] == (packed / hang).read_bytes()
    assert all(survivor.read(p) == (packed / p).read_bytes() for p in paths)
    assert survivor.remote.bytes_read[hang] == shards[hang][0]  # the survivor downloaded it once, completely
    assert survivor.stats().downloads == len(paths)
    survivor.close()
    assert verify_cache_dir(cache, shards) == {"shards": len(paths), "temp": 0}  # the dead one's temp is gone

    out = SPAWN.Queue()
    rerun = SPAWN.Process(target=rerun_check, args=(str(packed), str(cache), out))
    rerun.start()
    result = json.loads(out.get(timeout=60))
    rerun.join(20)
    assert result["ok"] and result["stats"]["downloads"] == 0 and result["stats"]["hits"] == len(paths)
    assert result["found"] == {"shards": len(paths), "temp": 0}


def test_two_processes_download_each_shard_once(packed: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    start, out = SPAWN.Event(), SPAWN.Queue()
    procs = [SPAWN.Process(target=read_everything, args=(str(packed), str(cache), start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    results = [json.loads(out.get(timeout=60)) for _ in procs]
    for p in procs:
        p.join(20)
        assert p.exitcode == 0
    shards = shard_table(packed)
    assert all(r["ok"] for r in results)
    assert sum(r["stats"]["downloads"] for r in results) == len(shards)
    assert sum(r["stats"]["bytes_downloaded"] for r in results) == sum(size for size, _ in shards.values())
    assert verify_cache_dir(cache, shards) == {"shards": len(shards), "temp": 0}


def test_cli_stats_and_clear_keep_what_is_in_use(packed: Path, tmp_path: Path, capsys) -> None:
    import argparse

    from dataio.commands import cache as command

    cache = tmp_path / "cache"
    shards = shard_table(packed)
    paths = sorted(shards)
    store = CachedStore(open_store(str(packed)), cache, 10**9, shards, prefetch=0, max_open=1)
    for p in paths:
        store.read_range(p, 0, 1)  # the last one stays pinned
    (Path(store.layout.tmp_dir) / "0123456789ab-99999-deadbeef.part").write_bytes(b"x" * 10)  # a dead download

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.run(parser.parse_args(["stats", str(cache), "--json"])) == 0
    (usage,) = json.loads(capsys.readouterr().out)
    assert usage["root"] == str(packed) and usage["shards"] == len(paths) and usage["in_use"] == 1
    assert usage["stale_temp"] == 1 and usage["plans"] == 0 and usage["limit"] == 10**9
    assert command.run(parser.parse_args(["stats", str(cache)])) == 0
    assert "1 in use" in capsys.readouterr().out

    assert command.run(parser.parse_args(["clear", str(cache)])) == 0
    text = capsys.readouterr().out
    assert f"removed {len(paths) - 1} shard(s)" in text and "kept 1 shard(s) in use" in text and paths[-1] in text
    assert store.read(paths[-1]) == (packed / paths[-1]).read_bytes()  # the pinned one is still served
    store.close()
    report = clear_cache(cache)
    assert report.removed == 1 and not report.kept_in_use
    assert inspect_cache(cache)[0].shards == 0
    assert verify_cache_dir(cache, shards) == {"shards": 0, "temp": 0}


def test_plan_of_a_killed_process_is_ignored_and_removed(packed: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ready = SPAWN.Event()
    child = SPAWN.Process(target=publish_plan_and_wait, args=(str(packed), str(cache), ready))
    child.start()
    try:
        assert ready.wait(30)
        store = CachedStore(open_store(str(packed)), cache, 10**9, shard_table(packed), prefetch=0)
        (plan,) = load_plans(store.layout)
        assert len(plan.order) == 2 and plan.cursor == 0
    finally:
        child.kill()
        child.join(20)
    assert load_plans(store.layout) == []
    assert os.listdir(store.layout.plans_dir) == []
    store.close()
