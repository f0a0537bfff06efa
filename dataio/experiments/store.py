"""Where finished runs live: one JSON file per run (written to a temp file, then renamed), and the combined results.

A run's file is the proof that it finished: the runner skips every run whose file exists with the same
configuration digest (:meth:`~dataio.experiments.config.ShuffleExperimentConfig.run_digest`), so a grid that was
stopped resumes where it was, and a changed configuration reruns what it changed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dataio.experiments.config import RunSpec

__all__ = ["RunStore", "write_json"]


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Writes ``data`` as JSON atomically: a temp file in the same directory, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    """The per-run JSON files under ``root``."""

    def __init__(self, root: str | os.PathLike[str], digest: str) -> None:
        self.root = Path(root)
        self.digest = digest

    def path(self, spec: RunSpec) -> Path:
        return self.root / f"{spec.run_id}.json"

    def load(self, spec: RunSpec) -> dict[str, Any] | None:
        """The finished run, or None when there is none made with this digest (or the file is unreadable)."""
        try:
            record = json.loads(self.path(spec).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("digest") != self.digest or record.get("run") != spec.as_dict():
            return None
        return record

    def save(self, spec: RunSpec, record: dict[str, Any]) -> None:
        record = dict(record, digest=self.digest, run=spec.as_dict(), run_id=spec.run_id)
        write_json(self.path(spec), record)

    def pending(self, specs: Iterable[RunSpec]) -> list[RunSpec]:
        """The runs that have no finished file yet, in the given order."""
        return [s for s in specs if self.load(s) is None]

    def finished(self, specs: Iterable[RunSpec]) -> list[dict[str, Any]]:
        """The finished runs' records, in the given order (missing runs left out)."""
        return [r for r in (self.load(s) for s in specs) if r is not None]
