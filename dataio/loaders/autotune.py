"""Online autotuning of the fast path: IO concurrency, decode threads and prefetch depth.

The tuner is a coordinate-ascent hill climber over integer knobs, driven by the throughput the training loop
actually sees (samples handed out per second). It is pure logic, without threads: the loader calls
:meth:`Tuner.observe` after every batch, and the tuner calls each knob's ``apply`` when it decides to try or
revert a value. One trial:

1. measure the current rate over a window (``window_s`` and at least ``min_batches`` batches);
2. move one knob one step (the knob the bottleneck hint names first: decode threads when decoded work piles up
   in the records queue, IO concurrency when the queue runs dry), wait ``settle_s``, measure again;
3. keep the step when the rate rose by more than ``min_gain`` over the window just before it, else revert it
   and try the other direction, then the next knob. Every trial is compared with a baseline measured right
   before it (not with an old, possibly lucky, window), and a kept step must be confirmed by the window after
   it, so the noise of a shared machine causes a wrong step only when it strikes two windows alike. When no
   step helps, the tuner is *converged*; it starts exploring again when the rate stays more than
   ``retune_change`` off the converged rate for three windows in a row (e.g. the store slowed down).

Every decision lands in ``decisions`` and hence in ``loader.stats()["autotune"]``. Limits keep the tuner inside
the machine: decode threads at most ``2 × cores`` (CPU), prefetch depth at most what ``memory_limit`` bytes of
batch buffers hold (memory), IO concurrency at most the reader's ``max_threads``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AutotuneConfig", "Knob", "Tuner"]


@dataclass(frozen=True)
class AutotuneConfig:
    """Settings of the fast path's autotuner (``DataLoader(autotune=AutotuneConfig(...))``).

    Args:
        window_s: Minimum length of one measurement window in seconds.
        min_batches: Minimum batches per measurement window.
        settle_s: Time after a change before measuring (queues refill, threads start).
        min_gain: Relative throughput gain a step must bring to be kept (noise margin).
        retune_change: Relative change of throughput after convergence that restarts exploration.
        max_decode_threads: Upper bound of decode threads (default ``2 × cores``).
        max_io_threads: Upper bound of reads in flight (default: the reader's ``max_threads``).
        max_prefetch: Upper bound of batches in flight.
        memory_limit: Bytes of batch buffers the prefetch depth may use (bounds ``max_prefetch``).
    """

    window_s: float = 1.0
    min_batches: int = 3
    settle_s: float = 0.3
    min_gain: float = 0.05
    retune_change: float = 0.25
    max_decode_threads: int | None = None
    max_io_threads: int | None = None
    max_prefetch: int = 16
    memory_limit: int = 2 << 30

    def __post_init__(self) -> None:
        for name in ("window_s", "settle_s", "min_gain", "retune_change"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("min_batches", "max_prefetch", "memory_limit"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("max_decode_threads", "max_io_threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")


@dataclass
class Knob:
    """One tunable integer in ``lo..hi``; ``apply(value)`` makes a new value effective in the pipeline."""

    name: str
    value: int
    lo: int
    hi: int
    apply: Callable[[int], None] = field(repr=False)
    geometric: bool = False  # steps double / halve (IO concurrency) instead of ±1

    def step(self, direction: int) -> int | None:
        """The neighbouring value in ``direction`` (+1 / -1), or None at the bound."""
        doubled = self.value * 2 if direction > 0 else self.value // 2
        new = doubled if self.geometric else self.value + direction
        new = min(self.hi, max(self.lo, new))
        return None if new == self.value else new

    def set(self, value: int) -> None:
        self.value = value
        self.apply(value)


class Tuner:
    """Coordinate-ascent autotuner (see the module docstring). Not thread-safe: one consumer drives it."""

    def __init__(self, knobs: list[Knob], config: AutotuneConfig, clock: Callable[[], float] = time.perf_counter):
        self.knobs = {k.name: k for k in knobs}
        self.config = config
        self.clock = clock
        self.decisions: list[dict[str, Any]] = []
        self.phase = "exploring"
        self.baseline: float | None = None  # rate at the current settings
        self._trial: tuple[str, int, int] | None = None  # (knob, old value, direction)
        self._todo: list[tuple[str, int]] | None = None  # (knob, direction) still to try; None: round not begun
        self._last_kept: tuple[str, int] | None = None
        self._drift = 0  # consecutive windows off the converged rate
        self._confirm: tuple[str, int, int, float] | None = None  # a kept step awaiting its second window
        self._settling = False
        self._paused = False
        self._last: float | None = None  # clock at the latest observed batch
        self._window_start = clock()
        self._items = 0
        self._batches = 0
        self._settle_until = 0.0

    # -- measurement ------------------------------------------------------------------------------
    def pause(self) -> None:
        """Leaves out the time from the last batch to the first batch after this call (an epoch boundary:
        the training loop's own work between epochs, and the refill of the emptied queues); the window in
        progress continues, so windows may span epochs shorter than ``window_s``."""
        self._paused = True

    def observe(self, items: int, hint: list[str] | None = None) -> None:
        """Records one delivered batch of ``items`` samples; may finish a window and move a knob.

        Args:
            items: Samples in the batch just handed to the training loop.
            hint: Knob names ordered by how likely they are the bottleneck (first = most likely).
        """
        now = self.clock()
        if self._paused or self._last is None:
            self._paused = False
            if self._last is None:  # the very first batch: measuring starts now
                self._window_start = max(self._window_start, now)
            else:
                gap = now - self._last
                self._window_start += gap
                self._settle_until += gap
            self._last = now
            return  # this batch waited for the (re)fill: not part of the steady rate
        self._last = now
        if self._settling:
            if now < self._settle_until:
                return
            self._settling = False  # the window starts at the end of this batch: no batch counted in part
            self._window_start, self._items, self._batches = now, 0, 0
            return
        self._items += items
        self._batches += 1
        elapsed = now - self._window_start
        if elapsed < self.config.window_s or self._batches < self.config.min_batches:
            return
        rate = self._items / max(elapsed, 1e-9)
        self._window_start, self._items, self._batches = now, 0, 0
        self._on_window(rate, hint or list(self.knobs))

    def _on_window(self, rate: float, hint: list[str]) -> None:
        if self._trial is not None:
            self._finish_trial(rate)  # the next window measures the baseline afresh, at the settings kept
            return
        if self._confirm is not None and self._unconfirmed(rate):
            return
        if self.phase == "converged":
            drifted = bool(self.baseline) and abs(rate / self.baseline - 1.0) > self.config.retune_change
            self._drift = self._drift + 1 if drifted else 0
            if self._drift >= 3:  # three windows in a row: a change of the workload, not noise
                self.decisions.append({"event": "retune", "rate_before": self.baseline, "rate_now": rate})
                self.phase, self._todo, self._drift = "exploring", None, 0
            else:
                return
        self.baseline = rate
        self._next_trial(hint)

    def _next_trial(self, hint: list[str]) -> None:
        if self._todo is None:
            order = [n for n in hint if n in self.knobs] + [n for n in self.knobs if n not in hint]
            self._todo = [(name, +1) for name in order]
        while self._todo:
            name, direction = self._todo.pop(0)
            knob = self.knobs[name]
            new = knob.step(direction)
            if new is None and direction > 0 and self._last_kept != (name, +1):
                direction, new = -1, knob.step(-1)  # at the upper bound: maybe fewer is better
            if new is None:
                continue
            self._trial = (name, knob.value, direction)
            knob.set(new)
            self._settle()
            return
        self.phase = "converged"
        self.decisions.append({"event": "converged", "rate": self.baseline, **self.values()})

    def _finish_trial(self, rate: float) -> None:
        name, old, direction = self._trial  # type: ignore[misc]
        self._trial = None
        knob = self.knobs[name]
        before = self.baseline or 0.0
        kept = rate > before * (1.0 + self.config.min_gain)
        self.decisions.append(
            {"knob": name, "from": old, "to": knob.value, "rate_before": before, "rate_after": rate, "kept": kept}
        )
        if kept:
            self._confirm = (name, old, direction, before)  # the next window must agree (noise guard)
            self._last_kept = (name, direction)
            # a step that helped: keep climbing this knob, then give every other knob another chance
            self._todo = [(name, direction)] + [(n, +1) for n in self.knobs if n != name]
        else:
            knob.set(old)
            self._settle()
            if direction > 0 and self._last_kept != (name, +1) and self._todo is not None:
                self._todo.insert(0, (name, -1))  # going up did not help: maybe fewer is better

    def _settle(self) -> None:
        """A knob moved: ignore batches for ``settle_s``, then start a fresh window at a batch boundary."""
        self._settle_until = self.clock() + self.config.settle_s
        self._settling = True

    def _unconfirmed(self, rate: float) -> bool:
        """Second look at a kept step: the window after it (at the new setting) must also beat the rate before
        the step by half the margin; otherwise the gain was a lucky window and the step is undone. True when
        the step was undone (the next window measures the baseline again)."""
        name, old, direction, before = self._confirm  # type: ignore[misc]
        self._confirm = None
        if rate > before * (1.0 + self.config.min_gain / 2):
            return False
        knob = self.knobs[name]
        self.decisions.append(
            {
                "knob": name,
                "from": knob.value,
                "to": old,
                "rate_before": before,
                "rate_after": rate,
                "kept": False,
                "event": "unconfirmed",
            }
        )
        knob.set(old)
        self._last_kept = None
        if self._todo is not None:
            self._todo = [(n, d) for n, d in self._todo if (n, d) != (name, direction)]
        self._settle()
        return True

    # -- reporting --------------------------------------------------------------------------------
    def values(self) -> dict[str, int]:
        return {name: knob.value for name, knob in self.knobs.items()}

    def summary(self) -> dict[str, Any]:
        """Plain-data report for ``loader.stats()["autotune"]``."""
        return {
            "enabled": True,
            "phase": self.phase,
            "knobs": self.values(),
            "limits": {name: [k.lo, k.hi] for name, k in self.knobs.items()},
            "rate": self.baseline,
            "decisions": list(self.decisions),
        }
