"""Emulated multi-node network for benchmarks: one network namespace per "node", joined by a userspace TUN
forwarder that adds a fixed one-way delay (``netem`` is not available in this kernel), egress capped by
``tc tbf``. Ranks on one node talk over that namespace's loopback (fast), ranks on different nodes over the
emulated link (slow). Needs root (iproute2); only loopback and these namespaces receive traffic.
"""

from __future__ import annotations

import collections
import ctypes
import fcntl
import os
import struct
import subprocess
import threading
import time

__all__ = ["MTU", "NS_PREFIX", "SUBNET", "EmulatedNetwork"]

NS_PREFIX = "dataio-ar"
SUBNET = "10.231.0"
MTU = 32000


class EmulatedNetwork:
    """``nodes`` namespaces joined by a delaying TUN forwarder, egress capped by ``tc tbf`` (root only)."""

    TUNSETIFF, IFF_TUN, IFF_NO_PI, CLONE_NEWNET = 0x400454CA, 0x0001, 0x1000, 0x40000000

    def __init__(self, nodes: int, rate: str, delay_s: float) -> None:
        self.nodes, self.rate, self.delay = nodes, rate, delay_s
        self.fds: list[int] = []
        self.queue: collections.deque[tuple[float, int, bytes]] = collections.deque()
        self.cond = threading.Condition()
        self.stop = False
        self.threads: list[threading.Thread] = []

    def ns(self, i: int) -> str:
        return f"{NS_PREFIX}-{os.getpid()}-{i}"

    def addr(self, i: int) -> str:
        return f"{SUBNET}.{i + 1}"

    def dev(self, i: int) -> str:
        return f"dar{i}"

    def up(self) -> None:
        for i in range(self.nodes):
            ns, dev = self.ns(i), self.dev(i)
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "tuntap", "add", "dev", dev, "mode", "tun")
            _ip("-n", ns, "link", "set", dev, "mtu", str(MTU), "up")
            _ip("-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", dev)
            burst = str(MTU + 768)  # one packet: every packet is paced (a large bucket lets short bursts free)
            _run(
                [
                    "tc",
                    "-n",
                    ns,
                    "qdisc",
                    "add",
                    "dev",
                    dev,
                    "root",
                    "tbf",
                    "rate",
                    self.rate,
                    "burst",
                    burst,
                    "limit",
                    str(64 * MTU),
                ]
            )
        opener = threading.Thread(target=self._open_tuns)  # setns() moves only the calling thread
        opener.start()
        opener.join()
        if len(self.fds) != self.nodes:
            raise OSError("could not open the TUN devices inside the namespaces")
        self.threads = [threading.Thread(target=self._read, args=(i,), daemon=True) for i in range(self.nodes)]
        self.threads.append(threading.Thread(target=self._write, daemon=True))
        for t in self.threads:
            t.start()

    def _open_tuns(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        for i in range(self.nodes):
            nsfd = os.open(f"/var/run/netns/{self.ns(i)}", os.O_RDONLY)
            try:
                if libc.setns(nsfd, self.CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(nsfd)
            fd = os.open("/dev/net/tun", os.O_RDWR)
            fcntl.ioctl(fd, self.TUNSETIFF, struct.pack("16sH", self.dev(i).encode(), self.IFF_TUN | self.IFF_NO_PI))
            self.fds.append(fd)

    def _read(self, i: int) -> None:
        fd = self.fds[i]
        while not self.stop:
            try:
                packet = os.read(fd, MTU + 100)
            except OSError:
                return
            if len(packet) < 20 or packet[0] >> 4 != 4:
                continue  # IPv4 only (no IPv6 addresses are configured)
            node = packet[19] - 1
            if 0 <= node < self.nodes and node != i:
                with self.cond:
                    self.queue.append((time.perf_counter() + self.delay, node, packet))
                    self.cond.notify()

    def _write(self) -> None:
        while not self.stop:
            with self.cond:
                while not self.queue and not self.stop:
                    self.cond.wait(0.5)
                if self.stop:
                    return
                due, node, packet = self.queue[0]
                wait = due - time.perf_counter()
                if wait > 0:
                    self.cond.wait(wait)
                    continue
                self.queue.popleft()
            os.write(self.fds[node], packet)

    def down(self) -> None:
        self.stop = True
        with self.cond:
            self.cond.notify_all()
        for fd in self.fds:
            os.close(fd)
        for i in range(self.nodes):
            subprocess.run(["ip", "netns", "del", self.ns(i)], capture_output=True, check=False)


def _run(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        raise OSError(f"{' '.join(cmd)}: {out.stderr.strip()}")


def _ip(*args: str) -> None:
    _run(["ip", *args])


# -- ranks -------------------------------------------------------------------------------------------------
