"""``register_allreduce``: a DDP communication hook that runs a dataio allreduce strategy on every bucket.

Where the work runs:

- CPU tensors (gloo): a single comm thread per hook executes buckets first-in first-out, each as a blocking
  chain of collectives. One FIFO thread keeps every rank issuing the collectives of every group in the same
  order (a multi-stage chain driven by future callbacks could interleave the stages of two buckets differently on
  different ranks), while backward keeps computing on the main thread: gloo and the autograd kernels release the
  GIL.
- CUDA tensors (NCCL): the chain is enqueued on a side stream that first waits for the gradients; the collectives
  order that stream only, the host returns at once, and DDP's wait on the returned CUDA-aware future orders its
  stream after the side stream.

Timing: ``stats()`` gives the buckets, bytes, comm seconds (sum over buckets, overlapped with backward or not) and
the stamp of the last bucket handed over, from which the harness measures the comm time left exposed after
backward's compute (see :mod:`dataio.train.steptime`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from dataio.train.clock import Clock
from dataio.train.comm import Allreduce, build_allreduce

__all__ = ["AllreduceHook", "CommStats", "register_allreduce"]


@dataclass(frozen=True)
class CommStats:
    """What the hook did since the last reset.

    Attributes:
        buckets: Buckets exchanged.
        bytes: Gradient bytes handed to the hook (before compression).
        seconds: Comm time summed over buckets (each from its start to its completion).
        last_ready: Clock stamp of the latest bucket handed over (``None`` before the first).
    """

    buckets: int
    bytes: int
    seconds: float
    last_ready: Any


class _CommThread:
    """One daemon thread running submitted calls in order; each call's result completes its future."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], torch.Tensor]) -> torch.futures.Future[torch.Tensor]:
        future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
        self._queue.put((call, future))
        return future

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            call, future = item
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to DDP's wait, which raises it on the training thread
                future.set_exception(exc)

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)


class AllreduceHook:
    """State of an installed hook: the strategy, where it runs, and its counters.

    Args:
        allreduce: The strategy (from :func:`dataio.train.comm.build_allreduce`).
        device: Device of the gradients.
    """

    def __init__(self, allreduce: Allreduce, device: torch.device | str = "cpu") -> None:
        self.allreduce = allreduce
        self.clock = Clock(device)
        self._lock = threading.Lock()
        self._thread: _CommThread | None = None
        self._stream: Any = None
        self._events: list[tuple[Any, Any]] = []
        self._buckets = 0
        self._bytes = 0
        self._seconds = 0.0
        self._last_ready: Any = None
        if self.clock.cuda:
            self._stream = torch.cuda.Stream(self.clock.device)
        else:
            self._thread = _CommThread(f"dataio-allreduce-rank{allreduce.groups.rank}")

    def install(self, ddp_model: Any) -> AllreduceHook:
        """Registers this hook on a DistributedDataParallel model (one hook may serve successive wrappers)."""
        check_world_group(ddp_model)
        ddp_model.register_comm_hook(self, _ddp_hook)
        return self

    def submit(self, tensor: torch.Tensor) -> torch.futures.Future[torch.Tensor]:
        """Averages ``tensor`` over all ranks, in place, asynchronously; the future yields the tensor."""
        with self._lock:
            self._buckets += 1
            self._bytes += tensor.numel() * tensor.element_size()
            self._last_ready = self.clock.now()
        if self._thread is not None:
            return self._thread.submit(lambda: self._timed(tensor))
        return self._submit_cuda(tensor)

    def _timed(self, tensor: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        try:
            return self.allreduce.average_(tensor)
        finally:
            with self._lock:
                self._seconds += time.perf_counter() - start

    def _submit_cuda(self, tensor: torch.Tensor) -> torch.futures.Future[torch.Tensor]:
        stream = self._stream
        stream.wait_stream(torch.cuda.current_stream(tensor.device))  # the gradients are ready
        future: torch.futures.Future[torch.Tensor] = torch.futures.Future(devices=[tensor.device])
        with torch.cuda.stream(stream):
            tensor.record_stream(stream)
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record(stream)
            self.allreduce.average_(tensor)  # stream-ordered: the host does not wait
            end.record(stream)
            future.set_result(tensor)  # CUDA-aware: DDP's wait orders its stream after this one
        with self._lock:
            self._events.append((start, end))
        return future

    def stats(self) -> CommStats:
        """Counters since the last :meth:`reset` (on CUDA, waits for the exchanges it times)."""
        with self._lock:
            events, self._events = self._events, []
        seconds = sum(self.clock.seconds(a, b) for a, b in events)
        with self._lock:
            self._seconds += seconds
            return CommStats(self._buckets, self._bytes, self._seconds, self._last_ready)

    def reset(self) -> None:
        """Zeroes the counters."""
        self.stats()
        with self._lock:
            self._buckets = self._bytes = 0
            self._seconds = 0.0
            self._last_ready = None

    def close(self) -> None:
        """Stops the comm thread (the hook must not be used afterwards)."""
        if self._thread is not None:
            self._thread.close()
            self._thread = None

    def __enter__(self) -> AllreduceHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AllreduceHook({self.allreduce!r})"


def _ddp_hook(state: AllreduceHook, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    return state.submit(bucket.buffer())


# DDP compares the annotations with the real classes; `from __future__ import annotations` made them strings
_ddp_hook.__annotations__ = {
    "state": AllreduceHook,
    "bucket": dist.GradBucket,
    "return": torch.futures.Future[torch.Tensor],
}


def check_world_group(ddp_model: Any) -> None:
    """Raises ValueError unless the DDP model reduces over the whole world (the groups are built from it)."""
    group = getattr(ddp_model, "process_group", None)
    if group is not None and dist.get_world_size(group) != dist.get_world_size():
        raise ValueError("register_allreduce needs a DDP model over the default (world) process group")


def register_allreduce(
    ddp_model: Any,
    strategy: str = "hierarchical",
    ranks_per_node: int | None = None,
    compress: str | None = None,
    *,
    variant: str = "auto",
) -> AllreduceHook:
    """Installs a gradient allreduce hook on a DistributedDataParallel model (collective: call on every rank).

    Args:
        ddp_model: A ``torch.nn.parallel.DistributedDataParallel`` over the default process group, before its
            first backward.
        strategy: ``"flat"`` (one allreduce over all ranks) or ``"hierarchical"`` (intra-node, inter-node,
            intra-node; flat on a single node).
        ranks_per_node: Emulate nodes of this many consecutive ranks; default: the real nodes (torchrun's
            ``GROUP_RANK`` / ``LOCAL_WORLD_SIZE``, else host names).
        compress: ``None``, ``"fp16"`` or ``"bf16"``: transfer dtype, with pre-division by the world size.
        variant: Hierarchical arrangement: ``"scatter"`` (reduce-scatter / allreduce / all-gather),
            ``"leader"`` (reduce / allreduce among leaders / broadcast) or ``"auto"`` (the faster, measured
            once here).

    Returns:
        The hook's state: ``stats()``, ``reset()``, ``install(other_ddp)``, ``close()``.

    Raises:
        ValueError: Bad arguments, or a DDP model over a sub-group.
    """
    check_world_group(ddp_model)
    device = next(ddp_model.parameters()).device
    bucket = int(getattr(ddp_model, "bucket_bytes_cap", 4 << 20) or 4 << 20)
    allreduce = build_allreduce(
        strategy,
        ranks_per_node=ranks_per_node,
        compress=compress,
        variant=variant,
        device=device,
        probe_bytes=min(bucket, 4 << 20),
    )
    return AllreduceHook(allreduce, device).install(ddp_model)
