"""No module is imported on a loader's worker threads (issue 19 item 2): CPython keeps a lock per module being
imported, and a child forked while a worker thread was importing waits forever on that lock when it imports the
module itself. Seen: numpy imports ``numpy.ma`` on the first ``np.unique`` (the read stage's), and 1 child in ~200
forked during the first epoch hung. Checked with an audit hook, which sees every real import (a module not yet
in ``sys.modules``) and the thread doing it, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import sys, threading
imports = []
sys.addaudithook(lambda event, args: event == "import" and threading.current_thread() is not threading.main_thread()
                 and imports.append((threading.current_thread().name, args[0])))
import dataio
ds = dataio.open_dataset(sys.argv[1])
for native in (True, False):
    for workers in (1, 2):
        loader = dataio.DataLoader(ds, batch_size=4, num_workers=workers, shuffle=True,
                                   pipeline=dataio.ImagePipeline(train=True, size=24, native=native))
        for epoch in range(2):
            loader.set_epoch(epoch)
            for _ in loader:
                pass
print(sorted(set(imports)))
"""


@pytest.mark.parametrize("mode", ["global", "shard"])
def test_an_epoch_imports_nothing_on_its_threads(packed: Path, mode: str) -> None:
    script = SCRIPT.replace("shuffle=True", f"shuffle_mode={mode!r}")
    done = subprocess.run(
        [sys.executable, "-c", script, str(packed)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]", f"imported on worker threads: {done.stdout}"
