"""native/: every C file is a pure core (no Python.h, not even through a header it includes) or one of the few
thin bindings, and the module is initialised in phases (issue 20, item 7)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

NATIVE = Path(__file__).resolve().parents[2] / "native"
#: The files that talk to Python: they validate and copy arguments, then call a core.
BINDINGS = {"module.c", "kernel.c", "calls.c", "ring.c", "args.c"}
INCLUDE = re.compile(r'^\s*#\s*include\s+([<"])([^>"]+)[>"]', re.MULTILINE)


def _includes_python(path: Path, seen: set[Path] | None = None) -> bool:
    seen = set() if seen is None else seen
    if path in seen:
        return False
    seen.add(path)
    for kind, name in INCLUDE.findall(path.read_text()):
        if name == "Python.h":
            return True
        local = (path.parent / name).resolve()
        if kind == '"' and local.is_file() and _includes_python(local, seen):
            return True
    return False


def test_every_c_file_is_a_core_or_a_binding() -> None:
    sources = [*sorted(NATIVE.glob("*.c")), NATIVE / "ring_core.h"]
    python = {p.name for p in sources if _includes_python(p)}
    assert python <= BINDINGS, f"cores that reach Python.h: {sorted(python - BINDINGS)}"
    cores = {p.name for p in sources} - BINDINGS
    assert {"pool.c", "jpeg_window.c", "jpeg_end.c", "windows.c", "forks.c", "ring_core.h"} <= cores


def test_the_module_is_initialised_in_phases_and_says_it_needs_the_gil() -> None:
    text = (NATIVE / "module.c").read_text()
    assert "PyModuleDef_Init(" in text and "Py_mod_exec" in text
    assert "Py_MOD_GIL_USED" in text and "Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED" in text
    native = pytest.importorskip("dataio._native")
    spec = importlib.util.find_spec("dataio._native")
    again = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(again)  # a second module object: multi-phase init makes one, sharing the process state
    assert again is not native and again.Ring is native.Ring and again.RingClosed is native.RingClosed
