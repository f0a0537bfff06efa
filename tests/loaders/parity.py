"""Shared parts of the parity suite: the loaders compared and the datasets they load.

Every behaviour is run under ``torch.utils.data.DataLoader`` ("torch") and ``dataio.DataLoader`` in each worker
mode ("process", "thread"), and the results are compared. Datasets are module-level classes (picklable) and
small: worker processes are forked (the default context on Linux), so an epoch costs a fork per worker.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud

import dataio

MODES = ("process", "thread")
KINDS = ("torch", *MODES)


def make_loader(kind: str, dataset: Any, **kw: Any) -> tud.DataLoader:
    """torch's loader (``kind="torch"``) or dataio's in worker mode ``kind``; each gets its own copy of
    ``generator``, so loaders made from the same arguments draw the same numbers."""
    g = kw.get("generator")
    if g is not None:
        kw["generator"] = torch.Generator().set_state(g.get_state())
    if kind == "torch":
        return tud.DataLoader(dataset, **kw)
    return dataio.DataLoader(dataset, worker_mode=kind, **kw)


def gen(seed: int = 3) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def drain(it: Iterator[Any]) -> list[Any]:
    """Every item of ``it``; an exception raised by ``next`` is recorded as ``("error", type name)`` and
    iteration goes on (torch's contract: a failed batch does not end the epoch)."""
    out: list[Any] = []
    while True:
        try:
            out.append(next(it))
        except StopIteration:
            return out
        except Exception as exc:
            out.append(("error", type(exc).__name__))


def same(x: Any, y: Any) -> bool:
    """Structural equality of batches (tensors: same dtype and values)."""
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, list | tuple):
        return type(x) is type(y) and len(x) == len(y) and all(same(a, b) for a, b in zip(x, y, strict=True))
    return bool(x == y)


class Squares(tud.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": torch.tensor([i, i * i]), "i": i, "f": i / 2, "name": f"s{i}", "pair": [i, -i]}


class Exploding(Squares):
    """Samples 5 and 13 raise."""

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i in (5, 13):
            raise KeyError(f"sample {i} is broken")
        return super().__getitem__(i)


class WhoLoads(tud.Dataset):
    """Each sample says which worker loaded it: id, num_workers, seed, whether the info's dataset is the one
    the worker holds, and how often ``worker_init_fn`` ran in that worker."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.inits = 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        info = tud.get_worker_info()
        if info is None:
            return torch.tensor([i, -1, 0, 0, 0])
        return torch.tensor([i, info.id, info.num_workers, info.seed % 2**40, int(info.dataset is self)])


def count_init(worker_id: int) -> None:
    info = tud.get_worker_info()
    if info is None or info.id != worker_id:
        raise RuntimeError("worker_init_fn without its worker's info")
    info.dataset.inits += 1


class InitCounted(WhoLoads):
    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.cat([super().__getitem__(i), torch.tensor([self.inits])])


class Draws(tud.Dataset):
    """Augmentation-style draws from ``random``, ``numpy`` and ``torch``: from the worker thread's private
    generators when the worker info has them (thread mode), else from the globals (torch's processes)."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, i: int) -> torch.Tensor:
        info = tud.get_worker_info()
        rng = getattr(info, "rng", None)
        if rng is not None:
            r, n = rng.random_generator.random(), rng.numpy_generator.rand()
            t = torch.rand(1, generator=rng.torch_generator).item()
        else:
            r, n, t = random.random(), np.random.rand(), torch.rand(1).item()
        return torch.tensor([float(i), r, n, t], dtype=torch.float64)


class Sleepy(Squares):
    """Sample 5 takes ``delay`` seconds (a stuck worker)."""

    def __init__(self, n: int, delay: float) -> None:
        super().__init__(n)
        self.delay = delay

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i == 5:
            time.sleep(self.delay)
        return super().__getitem__(i)


class Shards(tud.IterableDataset):
    """An iterable dataset sharded by worker: worker ``k`` yields block ``k`` (blocks of unequal length, so one
    worker runs dry before the other)."""

    def __init__(self, blocks: list[range]) -> None:
        self.blocks = blocks

    def __iter__(self) -> Iterator[int]:
        info = tud.get_worker_info()
        if info is None:
            return iter([x for b in self.blocks for x in b])
        return iter([x for k, b in enumerate(self.blocks) if k % info.num_workers == info.id for x in b])

    def __len__(self) -> int:
        return sum(len(b) for b in self.blocks)


class NoLenSampler(tud.Sampler[int]):
    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n - 1, -1, -1))


class NoLenBatchSampler(tud.Sampler[list[int]]):
    """Uneven batches, no ``__len__``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Iterator[list[int]]:
        i, size = 0, 1
        while i < self.n:
            yield list(range(i, min(self.n, i + size)))
            i, size = i + size, size % 4 + 1


class LenBatchSampler(NoLenBatchSampler):
    def __len__(self) -> int:
        return sum(1 for _ in iter(self))


def pairs_collate(batch: list[dict[str, Any]]) -> tuple[int, list[int]]:
    return len(batch), [s["i"] for s in batch]


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("dataio-worker", "pt_data", "dataio-"))]


def fail_in_worker_1(worker_id: int) -> None:
    if worker_id == 1:
        raise ValueError("worker 1 cannot start")
