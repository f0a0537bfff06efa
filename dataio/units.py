"""Sizes and counts as people write them, parsed in one place (the CLI, ``open_dataset`` and pack all use it).

What a unit means (``dataio pack --help``, README):

- ``KB``, ``MB``, ``GB``, ``TB`` (any case; ``kB`` too) are decimal, as disks and object stores count:
  ``"2GB"`` is 2·10⁹ bytes;
- ``KiB``, ``MiB``, ``GiB``, ``TiB`` and the bare letters ``K``, ``M``, ``G``, ``T`` are binary, as ``dd`` and
  memory count: ``"2GiB"`` and ``"2G"`` are 2·2³⁰ bytes;
- a plain number (``"1048576"``, ``"1048576B"``) is bytes; fractions are allowed (``"1.5GiB"``) and rounded down.
"""

from __future__ import annotations

import argparse
import re

__all__ = ["SIZE_HELP", "parse_size", "positive_int", "size_arg"]

#: One line for ``--help`` texts of size options.
SIZE_HELP = "KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB and K/M/G/T powers of 1024, a plain number is bytes"

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """``"256MB"`` → 256·10⁶, ``"1GiB"`` → 2³⁰, ``"8M"`` → 8·2²⁰, ``"4096"`` → 4096; an ``int`` is returned as is.

    Raises:
        ValueError: for anything else, with examples of what is accepted.
    """
    if isinstance(text, bool):
        raise ValueError(f"not a size: {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a size cannot be negative, got {text}")
        return text
    m = _SIZE.match(text) if isinstance(text, str) else None
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 8MB, 256MB, 1GiB, 1048576; {SIZE_HELP})")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def size_arg(text: str) -> int:
    """argparse type: :func:`parse_size` with argparse's error."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
