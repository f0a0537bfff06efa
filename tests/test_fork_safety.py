"""A ShardDataset survives fork and spawn: torch's worker processes over a dataset that has already served
batches (reader pool threads started, locks taken, sessions open) load every sample instead of hanging.

Each case runs in a fresh interpreter with a timeout, so a hang fails the test instead of blocking the run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TIMEOUT_S = 60

PRELUDE = """
import pickle, sys, threading
import torch.utils.data as tud
import dataio

def keys_through_torch_workers(ds, context="fork", workers=2, want=None):
    want = want or [ds[i]["key"] for i in range(len(ds))]
    loader = tud.DataLoader(ds, batch_size=5, num_workers=workers, collate_fn=list, multiprocessing_context=context)
    keys = [s["key"] for batch in loader for s in batch]
    if keys != want:
        sys.exit(f"wrong samples: {keys[:5]} ...")
    print("ok", len(keys))
"""


def run_case(body: str, *args: object) -> None:
    code = PRELUDE + textwrap.dedent(body)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=Path(__file__).resolve().parents[1],
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hung for {TIMEOUT_S} s (stderr: {exc.stderr!r})")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok"), proc.stdout + proc.stderr[-3000:]


def test_torch_workers_after_getitems(packed: Path) -> None:
    run_case(
        """
        ds = dataio.open_dataset(sys.argv[1])
        ds.__getitems__([0, 1])  # starts the reader's pool threads
        keys_through_torch_workers(ds)
        """,
        packed,
    )


def test_torch_workers_after_a_dataio_epoch_with_worker_threads(packed: Path) -> None:
    run_case(
        """
        ds = dataio.open_dataset(sys.argv[1])
        for _ in dataio.DataLoader(ds, batch_size=4, num_workers=2, worker_mode="thread", collate_fn=list):
            pass
        keys_through_torch_workers(ds)
        """,
        packed,
    )


def test_torch_workers_while_parent_threads_hold_the_locks(packed: Path) -> None:
    # fork() while other threads hold the dataset's, the store's and the reader's locks: the child must not
    # inherit them locked.
    run_case(
        """
        ds = dataio.open_dataset(sys.argv[1])
        want = [s["key"] for s in ds.__getitems__(list(range(len(ds))))]
        held, release = threading.Event(), threading.Event()

        def hold():
            with ds._lock, ds.store._lock, ds.reader._slots, ds.reader._lock:
                held.set()
                release.wait(60)

        threading.Thread(target=hold, daemon=True).start()
        held.wait(10)
        keys_through_torch_workers(ds, want=want)
        release.set()
        """,
        packed,
    )


def test_torch_workers_over_an_fsspec_store(packed: Path) -> None:
    run_case(
        """
        import fsspec
        fs = fsspec.filesystem("memory")
        fs.put(sys.argv[1], "/forksafe/ds", recursive=True)
        ds = dataio.open_dataset("memory://forksafe/ds")
        ds.__getitems__([0, 1])
        client = ds.store._fs
        keys_through_torch_workers(ds)
        if ds.store._fs is not client:
            sys.exit("the parent's client was replaced")
        """,
        packed,
    )


def test_torch_workers_over_a_cached_dataset(packed: Path, tmp_path: Path) -> None:
    run_case(
        """
        ds = dataio.open_dataset(sys.argv[1], cache_dir=sys.argv[2])
        ds.__getitems__([0, 1])
        keys_through_torch_workers(ds)
        """,
        packed,
        tmp_path / "cache",
    )


def test_spawned_workers_and_pickling_after_use(packed: Path) -> None:
    run_case(
        """
        ds = dataio.open_dataset(sys.argv[1])
        ds.__getitems__([0, 1])
        copy = pickle.loads(pickle.dumps(ds))
        if copy.__getitems__([2, 3])[1]["key"] != ds[3]["key"]:
            sys.exit("the unpickled copy reads other samples")
        keys_through_torch_workers(ds, context="spawn", workers=1)
        """,
        packed,
    )


def test_closed_reader_stays_closed_in_a_forked_child(packed: Path) -> None:
    run_case(
        """
        import os
        from dataio.storage import RangeReader
        reader = RangeReader(dataio.open_dataset(sys.argv[1]).store, threads=2)
        reader.close()
        pid = os.fork()
        if pid == 0:
            try:
                list(reader.read_many([("manifest.json", 0, 1)]))
            except RuntimeError:
                os._exit(0)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit("a closed reader accepted work in the child")
        print("ok")
        """,
        packed,
    )


def test_a_copy_shares_the_reader_and_loaded_indexes(packed: Path) -> None:
    import copy

    import dataio

    ds = dataio.open_dataset(packed)
    ds.__getitems__([0, 1])
    twin = copy.copy(ds)
    assert twin.reader is ds.reader and twin._indexes is ds._indexes
    assert twin[3]["key"] == ds[3]["key"]
