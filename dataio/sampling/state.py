"""Validation of DistributedShuffleSampler state dicts (plain, JSON-serialisable data)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["STATE_KIND", "STATE_VERSION", "check_state"]

STATE_KIND = "dataio.DistributedShuffleSampler"
STATE_VERSION = 1

# key -> (type, minimum) ; minimum None for non-numeric entries
_FIELDS: dict[str, tuple[type, int | None]] = {
    "mode": (str, None),
    "seed": (int, 0),
    "mode_params": (dict, None),
    "epoch": (int, 0),
    "consumed": (int, 0),
    "world_size": (int, 1),
    "drop_last": (bool, None),
    "num_samples": (int, 0),
    "layout_digest": (str, None),
}


def check_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """Check a sampler state's kind, version, keys, value types and ranges.

    Returns:
        The validated fields (``mode_params`` copied into a plain dict).

    Raises:
        TypeError: If ``state`` is not a mapping or a value has the wrong type.
        ValueError: If it is another object's state, another version, misses keys or has a value
            out of range.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping, got {type(state).__name__}")
    if state.get("kind") != STATE_KIND:
        raise ValueError(f"not a sampler state: kind={state.get('kind')!r}, expected {STATE_KIND!r}")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"unsupported sampler state version {state.get('version')!r}, expected {STATE_VERSION}")
    missing = sorted(set(_FIELDS) - set(state))
    if missing:
        raise ValueError(f"sampler state misses key(s) {missing}")
    fields: dict[str, Any] = {}
    for key, (kind, minimum) in _FIELDS.items():
        value = state[key]
        wrong_bool = kind is int and isinstance(value, bool)
        if wrong_bool or not isinstance(value, Mapping if kind is dict else kind):
            raise TypeError(f"sampler state {key!r} must be {kind.__name__}, got {type(value).__name__}")
        if minimum is not None and value < minimum:
            raise ValueError(f"sampler state {key!r} must be >= {minimum}, got {value}")
        fields[key] = dict(value) if kind is dict else value
    return fields
