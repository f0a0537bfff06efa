"""``torch.utils.data.get_worker_info()`` inside dataio's worker threads, and each worker's seeds.

torch keeps the worker info in a module global of ``torch.utils.data._utils.worker``: right in a worker
process (one worker per process), wrong with several worker threads in one process. :func:`install` makes
torch's own ``get_worker_info`` function answer per thread: it swaps the function's code (once per process,
idempotent) for code that returns the calling thread's info when a dataio worker thread set one, and torch's
global otherwise. Swapping the code rather than the module attribute reaches every caller, including modules
that did ``from torch.utils.data import get_worker_info`` before dataio was imported; the main thread and
torch's worker processes see exactly what they saw before.

Seeds: worker ``k`` of an iterator with base seed ``b`` gets ``seed = b + k`` (as in torch). A worker process
seeds the process-global ``random``, ``numpy`` and ``torch`` generators with it; worker *threads* share those
generators with each other and with the training loop, so dataio does not reseed them (that would reset the
training loop's RNG, and concurrent draws would still interleave by timing). Instead each worker thread's
info carries private generators in torch's own field for them (``WorkerInfo.rng``, with
``worker_method="thread"``), seeded exactly as torch seeds a worker process's globals:
``info.rng.random_generator`` (``random.Random(seed)``), ``info.rng.torch_generator`` (a ``torch.Generator``
seeded with ``seed``) and ``info.rng.numpy_generator`` (a ``numpy.random.RandomState`` seeded with torch's
numpy seed sequence for that worker, the same state ``np.random`` has in a torch worker process). Draws from
them reproduce, per worker, the draws a torch worker process makes from its globals, whatever the timing.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from typing import Any

import torch

from dataio.loaders.torch_compat import worker_module

__all__ = ["clear_thread_worker_info", "install", "set_thread_worker_info", "thread_worker_info"]

_LOCAL = threading.local()
_LOCAL_NAME = "_dataio_thread_worker_info"

# Compiled in a namespace of its own and then run with the globals of torch's worker module, where
# ``_worker_info`` is torch's global and ``_dataio_thread_worker_info`` is ``_LOCAL`` (set by install()).
_SOURCE = f"""
def get_worker_info():
    info = getattr({_LOCAL_NAME}, "info", None)
    return _worker_info if info is None else info
"""
_install_lock = threading.Lock()


def install() -> None:
    """Makes ``torch.utils.data.get_worker_info()`` thread-aware (see module docstring). Idempotent."""
    fn = worker_module().get_worker_info
    with _install_lock:
        if getattr(fn, "_dataio_thread_aware", False):
            return
        if fn.__code__.co_freevars or "_worker_info" not in fn.__globals__:
            raise RuntimeError("this torch's get_worker_info() is not the module-global lookup dataio expects")
        namespace: dict[str, Any] = {}
        exec(compile(_SOURCE, "<dataio thread-aware get_worker_info>", "exec"), namespace)
        fn.__globals__[_LOCAL_NAME] = _LOCAL
        fn.__code__ = namespace["get_worker_info"].__code__
        fn._dataio_thread_aware = True  # type: ignore[attr-defined]


def thread_worker_info(worker_id: int, num_workers: int, base_seed: int, dataset: Any) -> Any:
    """torch's ``WorkerInfo`` for worker thread ``worker_id``, with its private generators (on a torch whose
    ``WorkerInfo`` has the ``rng`` field)."""
    seed = base_seed + worker_id
    torch_worker = worker_module()
    fields = {f.name for f in dataclasses.fields(torch_worker.WorkerInfo)}
    if "rng" not in fields or not hasattr(torch_worker, "_RNG"):
        return torch_worker.WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset)
    try:
        import numpy as np

        numpy_random: Any = np.random.RandomState(torch_worker._generate_state(base_seed, worker_id))
    except ImportError:
        numpy_random = None
    rng = torch_worker._RNG(random.Random(seed), torch.Generator().manual_seed(seed), numpy_random)
    return torch_worker.WorkerInfo(
        id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset, rng=rng, worker_method="thread"
    )


def set_thread_worker_info(info: Any) -> None:
    """``get_worker_info()`` returns ``info`` on the calling thread from now on."""
    _LOCAL.info = info


def clear_thread_worker_info() -> None:
    _LOCAL.info = None
