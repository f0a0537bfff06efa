"""Every use of torch's private names in dataio, in one place, each checked before it is used.

dataio's drop-in loader keeps torch's contracts by reusing torch's own machinery: the base class of its
iterators (samplers, base seed, pin-memory checks), its fetchers, its pin-memory function, the worker-info
global and the seed derivation of its worker processes, and the storage use count that tells when a pooled
batch buffer is free again. None of these names is public, so none is promised across torch releases. Each is
looked up here once; a missing one does not break ``import dataio``: what needs it raises
:class:`TorchCompatError` naming the torch version and the missing name (and what still works) when it is used.
``tests/loaders/test_torch_compat.py`` checks every name on the installed torch, and that no other module of
dataio touches a private torch name.

Checked against torch 2.13 (:data:`TESTED`).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from dataio.errors import DataioError

__all__ = [
    "TESTED",
    "BaseDataLoaderIter",
    "DatasetKind",
    "TorchCompatError",
    "missing",
    "pin_memory",
    "storage_use_count",
    "worker_module",
]

#: torch releases (major, minor) whose private names this module was checked against.
TESTED = ((2, 13),)


class TorchCompatError(DataioError, RuntimeError):
    """A private torch name dataio relies on is missing from the installed torch."""


def _error(name: str, needed_for: str) -> TorchCompatError:
    tested = ", ".join(f"{a}.{b}" for a, b in TESTED)
    return TorchCompatError(
        f"torch {torch.__version__} has no {name}, which dataio needs for {needed_for} (checked with torch "
        f"{tested}); use a tested torch, or worker_mode='process' / a pipeline-backed loader, which do not need it"
    )


def _lookup(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


#: ``(where, name, what it is needed for)`` of every private name; :func:`missing` checks them all.
_NAMES = (
    ("torch.utils.data.dataloader", "_BaseDataLoaderIter", "worker_mode='thread' (the iterator's base class)"),
    ("torch.utils.data.dataloader", "_DatasetKind", "worker_mode='thread' (torch's fetchers)"),
    ("torch.utils.data._utils.pin_memory", "pin_memory", "pin_memory=True with worker_mode='thread'"),
    ("torch.utils.data._utils.worker", "get_worker_info", "get_worker_info() in worker threads"),
    ("torch.utils.data._utils.worker", "WorkerInfo", "get_worker_info() in worker threads"),
    ("torch.utils.data._utils.worker", "_generate_state", "worker threads' numpy seeds"),
    ("torch.utils.data._utils.worker", "_RNG", "worker threads' private generators (WorkerInfo.rng)"),
    ("torch._C", "_storage_Use_Count", "reusing batch buffers (without it each batch is a new allocation)"),
)


def missing() -> list[str]:
    """The private names (``module.name``) this torch lacks; empty on a tested torch."""
    return [f"{mod}.{name}" for mod, name, _ in _NAMES if _lookup(mod, name) is None]


class _MissingBase:
    """Stands in for a missing torch base class: subclassing works, instantiating raises the named error."""

    _name = "torch.utils.data.dataloader._BaseDataLoaderIter"
    _needed_for = "worker_mode='thread'"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise _error(self._name, self._needed_for)


BaseDataLoaderIter: type = _lookup("torch.utils.data.dataloader", "_BaseDataLoaderIter") or _MissingBase
DatasetKind: Any = _lookup("torch.utils.data.dataloader", "_DatasetKind")
_pin_memory = _lookup("torch.utils.data._utils.pin_memory", "pin_memory")
_use_count = _lookup("torch._C", "_storage_Use_Count")


def pin_memory(data: Any) -> Any:
    """torch's ``pin_memory`` of a batch (tensors, and the containers torch's pin-memory thread walks)."""
    if _pin_memory is None:
        raise _error("torch.utils.data._utils.pin_memory.pin_memory", "pin_memory=True with worker_mode='thread'")
    return _pin_memory(data)


def worker_module() -> Any:
    """torch's ``torch.utils.data._utils.worker`` module, after checking the names dataio uses from it."""
    module = importlib.import_module("torch.utils.data._utils.worker")
    for name in ("get_worker_info", "WorkerInfo", "_generate_state"):
        if not hasattr(module, name):
            raise _error(f"torch.utils.data._utils.worker.{name}", "get_worker_info() in worker threads")
    return module


def storage_use_count(t: torch.Tensor) -> int | None:
    """References to ``t``'s storage (one per tensor or view on it, plus a temporary one here), or ``None`` on a
    torch without the count (callers then never reuse a buffer)."""
    if _use_count is None:
        return None
    return int(_use_count(t.untyped_storage()._cdata))
