"""Where this process sits in the job: rank and world size.

Resolution order: an explicit argument, then ``torch.distributed`` when it is initialised, then the
``RANK`` / ``WORLD_SIZE`` environment variables (as set by ``torchrun``), then ``0`` / ``1``.
torch is never imported here: if it has not been imported yet, no process group can exist.
"""

from __future__ import annotations

import os
import sys

__all__ = ["resolve_rank_world"]


def _from_torch() -> tuple[int, int] | None:
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    try:
        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank()), int(dist.get_world_size())
    except (RuntimeError, ValueError, AttributeError):
        return None
    return None


def _from_env(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)  # type: ignore[call-overload]


def resolve_rank_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """Return ``(rank, world_size)``, filling missing values as described in the module docstring.

    Raises:
        TypeError: If a given value is not an int.
        ValueError: If ``world_size < 1`` or ``rank`` is outside ``[0, world_size)``.
    """
    torch_rw = _from_torch() if rank is None or world_size is None else None
    if world_size is None:
        world_size = torch_rw[1] if torch_rw else _from_env("WORLD_SIZE")
        world_size = 1 if world_size is None else world_size
    if rank is None:
        rank = torch_rw[0] if torch_rw else _from_env("RANK")
        rank = 0 if rank is None else rank
    world_size = _check_int("world_size", world_size)
    rank = _check_int("rank", rank)
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return rank, world_size
