"""``python -m tests.storage.faultproxy_cli 127.0.0.1:PORT --latency 0.01``: a :class:`FaultProxy` in a process of
its own (benchmarks: the proxy's GIL then competes with nobody); it prints its port and serves until its stdin
closes."""

from __future__ import annotations

import threading

from tests.storage.faultproxy import RESET_POINTS, FaultProxy


def main(argv: list[str] | None = None) -> None:
    """Runs a proxy in its own process (its GIL then competes with nobody): prints ``PORT`` on one line, serves
    until stdin closes (the parent exited or closed the pipe) or SIGTERM, then prints the counters as JSON."""
    import argparse
    import dataclasses
    import json
    import signal
    import sys

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("upstream", help="HOST:PORT of the server (loopback)")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--fail-rate", type=float, default=0.0)
    ap.add_argument("--reset-rate", type=float, default=0.0)
    ap.add_argument("--reset-at", choices=RESET_POINTS, default="request")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    proxy = FaultProxy(
        host,
        int(port),
        latency=args.latency,
        fail_rate=args.fail_rate,
        reset_rate=args.reset_rate,
        reset_at=args.reset_at,
        seed=args.seed,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at EOF: the parent is gone or wants us to stop
        done.set()

    with proxy:
        print(proxy.port, flush=True)
        threading.Thread(target=watch_stdin, daemon=True).start()
        done.wait()
    print(json.dumps(dataclasses.asdict(proxy.counters)), flush=True)


if __name__ == "__main__":
    main()
