"""Loader tests: collect each test's garbage when it ends.

A DALI pipeline lives in a reference cycle (its ``external_source`` callback and the lease holding it) and so
survives its test until the next garbage collection; a later test that forks torch worker processes while DALI's
thread pools are alive can see a worker crash (SIGSEGV) in the child. Collecting after every test ends those
pools before the next test starts.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    yield
    gc.collect()
