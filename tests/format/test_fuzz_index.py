"""Bounded hypothesis fuzz of the Parquet sample index as readers read it (``ShardDataset.index_table()`` and
``.labels``): hostile bytes whose sha256 the manifest records (a hostile dataset controls both) raise a DataioError
naming the index, never KeyError, ArrowInvalid, OverflowError or a crash of the process (issue 13, item 10).
``verify`` reads the same file with its own checks (tests/format/test_index_checksum.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

from dataio.dataset import ShardDataset
from dataio.errors import DataioError
from dataio.format.manifest import Manifest
from dataio.storage import open_store
from tests.format.test_fuzz_parsers import MANIFEST, mutated
from tests.fuzzing import Fuzz

TYPES = {"key": pa.string(), "label": pa.int64(), "shard": pa.int32(), "position": pa.int64()}
TYPES |= {"offset": pa.int64(), "length": pa.int64()}
ROWS = {"key": ["k0", "k1"], "label": [0, 1], "shard": [0, 0], "position": [0, 1], "offset": [52, 90]}
ROWS |= {"length": [38, 38]}
_stores = itertools.count()


def _parquet(table: pa.Table, compression: str = "zstd") -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=compression)
    return buf.getvalue()


INDEX = _parquet(pa.table({k: pa.array(v, type=TYPES[k]) for k, v in ROWS.items()}))
COLUMN_TYPES = st.sampled_from([pa.int64(), pa.int32(), pa.uint64(), pa.float64(), pa.string(), pa.bool_(), pa.null()])


@st.composite
def odd_tables(draw: st.DrawFn) -> bytes:
    """Well-formed Parquet with the wrong shape: columns missing or renamed, other types, nulls, other row counts."""
    rows = draw(st.integers(0, 4))
    names = draw(st.lists(st.sampled_from([*TYPES, "x"]), unique=True, max_size=7))
    columns = {}
    for name in names:
        typ = draw(COLUMN_TYPES | st.just(TYPES.get(name, pa.int64())))
        values = draw(st.lists(st.integers(-(1 << 63), (1 << 63) - 1) | st.none(), min_size=rows, max_size=rows))
        try:
            columns[name] = pa.array(values, type=pa.int64()).cast(typ, safe=False)
        except (pa.ArrowException, ValueError):
            columns[name] = pa.nulls(rows, typ)
    table = pa.table(columns) if columns else pa.table({"key": pa.array([], pa.string())})
    return _parquet(table, draw(st.sampled_from(["zstd", "none", "snappy"])))


def _dataset(data: bytes) -> ShardDataset:
    """A dataset (the fuzzed manifest's, 2 samples) whose index.parquet is ``data``, its sha256 in the manifest."""
    store = open_store(f"memory://fuzz-index-{next(_stores)}")
    store.write_bytes("index.parquet", data)
    manifest = dataclasses.replace(Manifest.loads(MANIFEST), index_sha256=hashlib.sha256(data).hexdigest())
    return ShardDataset(store, manifest)


def _read(data: bytes) -> None:
    ds = _dataset(data)
    try:
        table = _only_dataio_errors(ds.index_table)
        labels = _only_dataio_errors(lambda: ds.labels)
        if labels is not None:  # what the sampler and `dataio info` use: the stored labels, exactly
            assert len(labels) == len(ds) and labels.dtype == np.int64
            assert labels.tolist() == table.column("label").to_pylist()
    finally:
        ds.close()
        ds.store.delete("index.parquet")


def _only_dataio_errors(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except DataioError as exc:
        assert "index.parquet" in str(exc), exc
        return None


def test_the_fuzzed_index_is_valid() -> None:
    ds = _dataset(INDEX)
    assert ds.labels.tolist() == [0, 1] and ds.index_table().num_rows == 2


def _bad_column_name() -> bytes:
    """INDEX with the first byte of the ``label`` column's name in the footer's schema made 0xff (not UTF-8)."""
    footer = len(INDEX) - 8 - struct.unpack("<I", INDEX[-8:-4])[0]
    at = INDEX.index(b"\x18\x05label", footer) + 2
    return INDEX[:at] + b"\xff" + INDEX[at + 1 :]


def test_fuzz_parquet_index_bytes(fuzz: Fuzz) -> None:
    # Found by this fuzzer (--fuzz-seconds 40): arrow reads a column name that is not UTF-8 and raises
    # UnicodeDecodeError only when the name is asked for.
    fuzz(_read, mutated(INDEX), examples=[(_bad_column_name(),)], max_examples=300)


#: Found by this fuzzer: ``labels`` raised KeyError without a label column, a plain ValueError for a row count
#: that differs from the manifest's, and turned null or float labels into garbage integers without a word.
FOUND = [
    _parquet(pa.table({"key": pa.array(["a", "b"])})),
    _parquet(pa.table({"label": pa.array([], pa.int64())})),
    _parquet(pa.table({"label": pa.array([0, None], pa.int64())})),
    _parquet(pa.table({"label": pa.array([0.5, float("nan")], pa.float64())})),
    _parquet(pa.table({"label": pa.array([0, 1 << 63], pa.uint64())})),
]


def test_fuzz_parquet_index_shape(fuzz: Fuzz) -> None:
    fuzz(_read, odd_tables(), examples=[(data,) for data in FOUND], max_examples=150)
