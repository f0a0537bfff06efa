"""The ring core in C on real threads (tests/native/ring_stress.c), plain and under ThreadSanitizer.

The Python tests drive the rings through the GIL, which serialises every non-blocking attempt; this harness
runs the same core code with nothing serialising it. Without a C compiler (or, for the second test, without the
ThreadSanitizer runtime) the tests skip, except in CI (``CI=true``), where a missing tool is a broken setup and
the test fails, as the native build and SeaweedFS checks do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def missing(reason: str) -> None:
    """Skips, or fails in CI (``CI=true``: the CI image must provide what the test needs)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires it (install gcc with its sanitizer runtimes)")
    pytest.skip(reason)


def compiler() -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not sys.platform.startswith("linux"):
        missing("needs a C compiler on Linux")
    assert cc is not None
    return cc


def build(out: Path, *flags: str) -> Path | None:
    """Compiles the harness; None when the compiler refuses the flags (e.g. no ThreadSanitizer runtime)."""
    cmd = [compiler(), "-std=gnu11", "-g", "-pthread", *flags, str(HERE / "ring_stress.c"), "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        if flags and "-fsanitize=thread" in flags:
            return None
        pytest.fail(f"ring_stress.c does not compile:\n{done.stderr}")
    return out


def run(exe: Path, items: int) -> None:
    done = subprocess.run([str(exe), str(items)], capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, f"ring_stress failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    assert "all ring core checks passed" in done.stdout


def test_ring_core_on_threads(tmp_path: Path) -> None:
    exe = build(tmp_path / "stress", "-O2", "-Wall", "-Wextra", "-Werror")
    assert exe is not None
    run(exe, 20_000)


@pytest.mark.slow
def test_ring_core_under_thread_sanitizer(tmp_path: Path) -> None:
    exe = build(tmp_path / "tsan", "-O1", "-fsanitize=thread")
    if exe is None:
        missing("the compiler has no ThreadSanitizer runtime")
    assert exe is not None
    run(exe, 5_000)


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_missing_compiler_fails_in_ci_and_skips_elsewhere(tmp_path: Path, ci: str) -> None:
    env = {**os.environ, "CI": ci, "PATH": str(tmp_path)}  # no cc or gcc on this PATH
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            f"{__file__}::test_ring_core_on_threads",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=HERE.parents[1],
    )
    if ci:
        assert done.returncode == 1 and "1 failed" in done.stdout and "CI=true requires it" in done.stdout, done.stdout
    else:
        assert done.returncode == 0 and "1 skipped" in done.stdout, done.stdout
