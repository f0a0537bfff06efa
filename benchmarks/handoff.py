"""Hand-off between threads: dataio's native rings vs PyRing, queue.Queue and multiprocessing.Queue.

    python benchmarks/handoff.py [--items 200000] [--mp-items 40000] [--capacity 64] [--repeats 5]

Writes benchmarks/results/handoff.md (+ handoff.png with matplotlib). Two measurements per implementation:

- **saturated**: P producer threads put ``--items`` integers (``perf_counter_ns()`` at the put) as fast as they
  can into a queue of ``--capacity`` slots, C consumer threads get them (1×1 and 4×4; spsc only 1×1):
  items/s from the first put to the last get, and p50/p99 of put→get latency, which under saturation is mostly
  the time spent waiting in a full queue (≈ capacity ÷ rate);
- **idle consumer**: one producer puts an item every ~200 µs, so the consumer is asleep when it arrives:
  p50/p99 of put→get is the wake-up cost (futex wake + GIL) of each implementation.

multiprocessing.Queue runs twice: consumers as threads of this process, and as processes (fork): the
latter pays pickling and a pipe per item but not this process's GIL. ``perf_counter_ns`` is CLOCK_MONOTONIC,
so stamps compare across processes. Each configuration runs ``--repeats`` times interleaved; the fastest run is
reported (other jobs on shared cores only slow runs down), for the idle consumer the run with the median p50.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine, markdown_table

from dataio.loaders.rings import NATIVE_RINGS, RingClosed, make_ring

ns = time.perf_counter_ns
Run = dict[str, Any]


class Channel:
    """One implementation behind put/get/finish: rings end with close(), queues with one sentinel per
    consumer."""

    def __init__(self, name: str, make: Callable[[int], Any], ring: bool, process: bool = False) -> None:
        self.name, self.make, self.ring, self.process = name, make, ring, process


def consume_ring(q: Any, out: list[int]) -> None:
    get = q.get
    while True:
        try:
            t = get()
        except RingClosed:
            return
        out.append(ns() - t)


def consume_queue(q: Any, out: list[int]) -> None:
    get = q.get
    while True:
        t = get()
        if t is None:
            return
        out.append(ns() - t)


def consume_process(q: Any, results: Any) -> None:
    """Consumer process: latencies back to the parent in one message at the end."""
    out: list[int] = []
    consume_queue(q, out)
    results.put(out)


def produce(q: Any, n: int, pace_s: float = 0.0) -> None:
    put = q.put
    if pace_s:
        for _ in range(n):
            put(ns())
            time.sleep(pace_s)
    else:
        for _ in range(n):
            put(ns())


def run_once(ch: Channel, producers: int, consumers: int, items: int, capacity: int, pace_s: float = 0.0) -> Run:
    q = ch.make(capacity)
    per = items // producers
    lats: list[list[int]] = [[] for _ in range(consumers)]
    results: Any = None
    if ch.process:
        results = mp.get_context("fork").Queue()
        cons: list[Any] = [mp.get_context("fork").Process(target=consume_process, args=(q, results))
                           for _ in range(consumers)]
    else:
        target = consume_ring if ch.ring else consume_queue
        cons = [threading.Thread(target=target, args=(q, lats[c])) for c in range(consumers)]
    for c in cons:
        c.start()
    prods = [threading.Thread(target=produce, args=(q, per, pace_s)) for _ in range(producers)]
    t0 = time.perf_counter()
    for p in prods:
        p.start()
    for p in prods:
        p.join()
    if ch.ring:
        q.close()
    else:
        for _ in range(consumers):
            q.put(None)
    if ch.process:
        lats = [results.get() for _ in range(consumers)]
    for c in cons:
        c.join()
    elapsed = time.perf_counter() - t0
    every = sorted(x for out in lats for x in out)
    if len(every) != per * producers:
        raise RuntimeError(f"{ch.name}: {len(every)} of {per * producers} items arrived")
    return {
        "rate": len(every) / elapsed,
        "p50": every[len(every) // 2] / 1e3,
        "p99": every[min(len(every) - 1, int(len(every) * 0.99))] / 1e3,
    }


def channels() -> list[Channel]:
    out = []
    if NATIVE_RINGS:
        out += [
            Channel("native Ring spsc", lambda c: make_ring(c, "spsc", native=True), ring=True),
            Channel("native Ring mpmc", lambda c: make_ring(c, "mpmc", native=True), ring=True),
        ]
    out += [
        Channel("PyRing mpmc (fallback)", lambda c: make_ring(c, "mpmc", native=False), ring=True),
        Channel("queue.Queue", lambda c: queue.Queue(maxsize=c), ring=False),
        Channel("multiprocessing.Queue, consumer threads", lambda c: mp.get_context("fork").Queue(c), ring=False),
        Channel("multiprocessing.Queue, consumer processes", lambda c: mp.get_context("fork").Queue(c),
                ring=False, process=True),
    ]
    return out


def best_run(runs: list[Run]) -> Run:
    """The fastest run: load from other jobs only ever slows a run down."""
    return max(runs, key=lambda r: r["rate"])


def median_run(runs: list[Run], key: str) -> Run:
    return sorted(runs, key=lambda r: r[key])[len(runs) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200_000, help="items per saturated run (threads)")
    ap.add_argument("--mp-items", type=int, default=40_000, help="items per saturated multiprocessing.Queue run")
    ap.add_argument("--idle-items", type=int, default=2_000, help="items of the idle-consumer run")
    ap.add_argument("--capacity", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    t_start = time.perf_counter()

    chs = channels()
    shapes = [(1, 1), (4, 4)]
    plan = [(ch, p, c) for ch in chs for p, c in shapes if not (ch.name.endswith("spsc") and p > 1)]
    saturated: dict[tuple[str, int, int], list[Run]] = {}
    idle: dict[str, list[Run]] = {}
    for rep in range(args.repeats):
        for ch, p, c in plan:
            items = args.mp_items if ch.name.startswith("multiprocessing") else args.items
            saturated.setdefault((ch.name, p, c), []).append(run_once(ch, p, c, items, args.capacity))
            print(f"[{rep}] {ch.name} {p}x{c}: {saturated[ch.name, p, c][-1]}", flush=True)
        for ch in chs:
            idle.setdefault(ch.name, []).append(run_once(ch, 1, 1, args.idle_items, args.capacity, pace_s=2e-4))
            print(f"[{rep}] {ch.name} idle: {idle[ch.name][-1]}", flush=True)

    rows = []
    for ch, p, c in plan:
        r = best_run(saturated[ch.name, p, c])
        rows.append([ch.name, f"{p}×{c}", f"{r['rate']:,.0f}", f"{r['p50']:,.1f}", f"{r['p99']:,.1f}"])
    idle_rows = []
    for ch in chs:
        r = median_run(idle[ch.name], "p50")
        idle_rows.append([ch.name, f"{r['p50']:,.1f}", f"{r['p99']:,.1f}"])
    elapsed = time.perf_counter() - t_start
    ratios = []  # per repeat (runs of one repeat are close in time, so share the load): native ÷ queue.Queue
    for ch, p, c in plan:
        base = saturated.get(("queue.Queue", p, c))
        if ch.name.startswith("native") and base:
            rs = sorted(n["rate"] / q["rate"] for n, q in zip(saturated[ch.name, p, c], base, strict=True))
            ratios.append(f"{ch.name} {p}×{c} ÷ queue.Queue {p}×{c}: **{rs[len(rs) // 2]:.1f}×** "
                          f"(median of {len(rs)} paired runs; {rs[0]:.1f}–{rs[-1]:.1f}×)")

    text = f"""# Hand-off between threads: native rings vs Python queues

`{" ".join(["python", *sys.argv])}` on {machine()}; capacity {args.capacity}; {args.items:,} items per saturated
thread run ({args.mp_items:,} for multiprocessing.Queue), {args.idle_items:,} paced items for the idle consumer;
best of {args.repeats} interleaved runs (idle: median p50), {elapsed:.0f} s in all; niceness {os.nice(0)}, load
average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other jobs share the cores). Items are
`perf_counter_ns()` stamps taken at the put; latency = get time − stamp.

## Saturated: producers put as fast as they can

{markdown_table(["implementation", "producers×consumers", "items/s", "p50 put→get (µs)", "p99 put→get (µs)"], rows)}

{"; ".join(ratios) or "(dataio._native is not built: no native rows)"}.

## Idle consumer: one item every ~200 µs (wake-up latency)

{markdown_table(["implementation", "p50 put→get (µs)", "p99 put→get (µs)"], idle_rows)}
"""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "handoff.md").write_text(text)
    print(text)
    plot(rows)


def plot(rows: list[list[str]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    labels = [f"{r[0]} {r[1]}" for r in rows]
    rates = [float(r[2].replace(",", "")) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1))
    bars = ax.barh(labels[::-1], [r / 1e3 for r in rates[::-1]], color="#4477aa")
    ax.bar_label(bars, fmt="%.0f", padding=3, fontsize=8)
    ax.set_xlabel("thousand items/s")
    ax.set_title("Thread hand-off throughput, saturated")
    fig.tight_layout()
    fig.savefig(RESULTS / "handoff.png", dpi=110)


if __name__ == "__main__":
    main()
