"""One parser of sizes for the CLI, open_dataset and pack: "GB" is 10⁹ bytes, "GiB" and "G" 2³⁰ (issue 20, item 3)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from dataio import open_dataset
from dataio.pack import parse_size as pack_parse_size
from dataio.units import parse_size, positive_int, size_arg


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4096", 4096),
        ("4096B", 4096),
        ("2GB", 2 * 10**9),
        ("2gb", 2 * 10**9),
        ("2kB", 2000),
        ("2GiB", 2 << 30),
        ("2G", 2 << 30),
        ("1.5GiB", 3 << 29),
        ("3TB", 3 * 10**12),
        ("3T", 3 << 40),
        (" 8 MB ", 8 * 10**6),
        (7, 7),
    ],
)
def test_sizes(text: str | int, value: int) -> None:
    assert parse_size(text) == value == size_arg(str(text))
    assert pack_parse_size(text) == value  # pack's public name is the same function


@pytest.mark.parametrize("text", ["", "lots", "2 GBB", "-1", "1e9", "nanGB", "2PB"])
def test_not_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)
    with pytest.raises(argparse.ArgumentTypeError, match="not a size"):
        size_arg(text)


def test_negative_and_bool_are_refused() -> None:
    for bad in (-1, True):
        with pytest.raises(ValueError):
            parse_size(bad)  # type: ignore[arg-type]


def test_positive_int() -> None:
    assert positive_int("3") == 3
    for bad in ("0", "-2", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)


def test_open_dataset_cache_limit_uses_the_same_units(packed: Path, tmp_path: Path) -> None:
    with open_dataset(packed, cache_dir=tmp_path / "c", cache_limit="2GB") as ds:
        assert ds.store.options.limit == 2 * 10**9
