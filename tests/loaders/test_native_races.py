"""dataio._native under races, each in a fresh interpreter with a deadline (tests/loaders/native_races.py).

A hang ends the scenario (faulthandler prints every thread's stack) or, failing that, the subprocess timeout: a
regression fails here instead of blocking the run. A crash is the subprocess's signal. ``scripts/sanitize`` runs
these under AddressSanitizer + UndefinedBehaviorSanitizer too. Trial counts are what made the old code fail
reliably (the fork race hung ~10 % of children; the others failed on their first trials).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataio.loaders import native

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 150  # above native_races.HANG_S: faulthandler reports a hang first

pytestmark = [
    pytest.mark.skipif(not native.AVAILABLE, reason="dataio._native is not built"),
    pytest.mark.skipif(not hasattr(os, "fork") or not sys.platform.startswith("linux"), reason="needs Linux fork"),
]
ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
# the address-space limit those scenarios set leaves no room for AddressSanitizer's own mappings
under_asan = pytest.mark.skipif(ASAN, reason="RLIMIT_AS and ASan clash")
# GCC 12's ASan allocator is not fork-safe: a child forked while a parent thread holds one of its size-class locks
# (any thread that was allocating) waits forever in malloc, inside the ASan runtime (seen: ~1 child in 60, both
# of its new worker threads in SizeClassAllocator64::GetFromAllocator). Without ASan, glibc's malloc locks its
# arenas around fork() and the same scenario passes.
fork_under_asan = pytest.mark.skipif(ASAN, reason="the ASan runtime's allocator locks are not fork-safe")


def run_scenario(name: str, photos: Path, trials: int = 1) -> str:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.loaders.native_races", name, str(photos), str(trials)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{name}: hung for {TIMEOUT_S} s (stderr: {exc.stderr!r})")
    assert done.returncode == 0, f"{name}: exit status {done.returncode}\n{done.stdout}\n{done.stderr[-4000:]}"
    assert done.stdout.startswith("ok"), done.stdout + done.stderr[-4000:]
    return done.stdout


def test_close_while_runs_are_in_flight_finishes_them_and_returns(synth_dir: Path) -> None:
    run_scenario("close", synth_dir, 30)


@fork_under_asan
def test_forked_children_decode_while_parent_threads_run_the_kernel(synth_dir: Path) -> None:
    run_scenario("fork", synth_dir, 60)


def test_mutating_rows_flips_and_boxes_during_run_never_crashes(synth_dir: Path) -> None:
    run_scenario("mutate", synth_dir, 60)


@under_asan
def test_a_forked_child_that_cannot_start_threads_says_so(synth_dir: Path) -> None:
    run_scenario("fork-no-threads", synth_dir)


@under_asan
def test_a_partial_thread_start_reports_the_threads_it_got(synth_dir: Path) -> None:
    run_scenario("partial-start", synth_dir)


def test_a_forked_child_refuses_the_rings_it_inherited(synth_dir: Path) -> None:
    run_scenario("ring-fork", synth_dir, 30)


@fork_under_asan
def test_children_forked_during_an_epoch_iterate_the_same_loader(packed: Path) -> None:
    """Issue 19 item 2's third case: 1 of 10 children forked during a fast-path epoch hung using the loader. The
    last cause was not native: numpy imports ``numpy.ma`` lazily on the first ``np.unique``, and a child forked
    while a reader thread was inside that import waited forever on the module's import lock (1 in ~200 children;
    ``dataio/_forksafe.py`` now imports it up front, and nothing dataio runs on a worker thread imports lazily)."""
    run_scenario("loader-fork", packed, 100)
