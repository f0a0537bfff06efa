"""RunStore: a run counts as finished only with its file, written atomically, under the same digest."""

from __future__ import annotations

import json
from pathlib import Path

from dataio.experiments.config import RunSpec
from dataio.experiments.store import RunStore, write_json


def test_runs_are_pending_until_saved_and_only_under_their_digest(tmp_path: Path) -> None:
    a, b = RunSpec("digits", "sorted", "global", 1, 0), RunSpec("digits", "sorted", "local", 2, 0)
    store = RunStore(tmp_path, "d1")
    assert store.pending([a, b]) == [a, b]
    store.save(a, {"epochs": [{"epoch": 0}]})
    assert store.pending([a, b]) == [b]
    assert store.finished([a, b])[0]["run_id"] == a.run_id
    assert RunStore(tmp_path, "d2").pending([a]) == [a]  # another configuration: rerun
    store.path(b).write_text("{truncated")  # an unreadable file is not a finished run
    assert store.pending([b]) == [b]


def test_write_json_leaves_no_temp_file(tmp_path: Path) -> None:
    write_json(tmp_path / "sub" / "r.json", {"x": 1})
    assert json.loads((tmp_path / "sub" / "r.json").read_text()) == {"x": 1}
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["r.json"]
