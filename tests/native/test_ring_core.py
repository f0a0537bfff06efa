"""The ring core in C on real threads (tests/native/ring_stress.c), plain and under ThreadSanitizer.

The Python tests drive the rings through the GIL, which serialises every non-blocking attempt; this harness
runs the same core code with nothing serialising it. Skipped without a C compiler.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(
    CC is None or not sys.platform.startswith("linux"), reason="needs a C compiler on Linux"
)


def build(out: Path, *flags: str) -> Path | None:
    """Compiles the harness; None when the compiler refuses the flags (e.g. no ThreadSanitizer runtime)."""
    cmd = [str(CC), "-std=gnu11", "-g", "-pthread", *flags, str(HERE / "ring_stress.c"), "-o", str(out)]
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
        pytest.skip("the compiler has no ThreadSanitizer runtime")
    run(exe, 5_000)
