"""The house rules that code review alone would let slip (issue 20): no module over 400 lines, no import circle
(type-only imports included), and no floor importing a floor above it (``../shared/architecture.md``)."""

from __future__ import annotations

import ast
from pathlib import Path

import dataio

PACKAGE = Path(dataio.__file__).parent
MAX_LINES = 400
#: Floors bottom to top: a module may import its own floor and those below (dataio/cli.py and commands/ on top).
FLOORS = {
    "units": 1, "errors": 1, "gate": 1, "_forksafe": 1, "_lazy": 1, "format": 1, "storage": 1, "sampling": 1,
    "cache": 2, "pack": 2,
    "dataset": 3, "healing": 3, "index_file": 3, "manifest_file": 3, "inspection": 3,
    "loaders": 4,
    "train": 5,
    "experiments": 6, "commands": 6, "cli": 6, "__main__": 6, "__init__": 6,
}  # fmt: skip


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """dataio modules ``name`` imports anywhere (top level, functions, ``TYPE_CHECKING`` blocks)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("dataio"):
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def test_no_module_is_over_400_lines() -> None:
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert not {n: k for n, k in long.items() if k > MAX_LINES}


def test_no_import_circle() -> None:
    graph = _graph()
    # package __init__s that only re-export their own modules are not part of a circle through their children
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not circles, circles


def _floor(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return FLOORS[top]


def test_no_floor_imports_a_floor_above_it() -> None:
    upward = sorted(
        f"{m} (floor {_floor(m)}) imports {t} (floor {_floor(t)})"
        for m, targets in _graph().items()
        if m != "dataio"
        for t in targets
        if t != "dataio" and _floor(t) > _floor(m)
    )
    assert not upward, upward
