"""Arguments shared by several commands."""

from __future__ import annotations

import argparse
import json
from typing import Any

from dataio.units import positive_int

__all__ = ["add_storage_options", "positive_int", "storage_options"]


def add_storage_options(p: argparse.ArgumentParser) -> None:
    """Adds ``--storage-options JSON`` (fsspec options for dataset URLs; never printed)."""
    p.add_argument(
        "--storage-options",
        metavar="JSON",
        default=None,
        help='fsspec options for URLs, e.g. \'{"endpoint_url": "http://127.0.0.1:8333"}\'',
    )


def storage_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """Parses ``--storage-options``; the error never echoes the value (it may hold credentials)."""
    text = getattr(args, "storage_options", None)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError("--storage-options is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError("--storage-options must be a JSON object")
    return value
