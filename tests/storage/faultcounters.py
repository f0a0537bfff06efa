"""What a :class:`~tests.storage.faultproxy.FaultProxy` did: requests, faults injected, bytes and statuses relayed."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ProxyCounters"]


@dataclass
class ProxyCounters:
    """What the proxy did since start (or the last :meth:`FaultProxy.reset_counters`)."""

    connections: int = 0
    requests: int = 0
    forwarded: int = 0
    injected_503: int = 0
    resets: int = 0
    stalls: int = 0
    trickles: int = 0  # responses whose body was sent one byte per ``trickle_s``
    upstream_errors: int = 0
    bytes_up: int = 0  # request bytes sent to the upstream
    bytes_down: int = 0  # response bytes sent to clients (relayed and injected)
    statuses: dict[int, int] = field(default_factory=dict)  # upstream status -> count

    @property
    def bytes(self) -> int:
        return self.bytes_up + self.bytes_down
