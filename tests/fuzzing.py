"""Bounded fuzzing with hypothesis: the ``fuzz`` fixture of tests/conftest.py runs a target on examples drawn from
strategies under the ``"fuzz"`` settings profile (registered there), once in CI, or for a time with ``--fuzz-seconds``.

A target takes the drawn values and fails (raises) on a finding; explicit regression inputs (crashes found
before) run first, every round. Every round draws fresh random examples (no example database, not derandomized).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

__all__ = ["Fuzz"]


class Fuzz:
    """Runs fuzz targets; ``seconds`` > 0 keeps drawing new rounds of examples until that long has passed."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds

    def __call__(
        self,
        target: Callable[..., None],
        *strategies: st.SearchStrategy[Any],
        examples: Sequence[tuple[Any, ...]] = (),
        max_examples: int | None = None,
    ) -> None:
        test = given(*strategies)(target)
        for args in examples:
            test = example(*args)(test)
        profile = settings.get_profile("fuzz")
        test = settings(profile, max_examples=max_examples or profile.max_examples)(test)
        end = time.monotonic() + self.seconds
        test()
        while time.monotonic() < end:
            test()
