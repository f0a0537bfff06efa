"""The Parquet sample index (``index.parquet``) as ``ShardDataset`` reads it: bytes to a table, the label column.

Both are bounded against hostile files: unreadable Parquet, undecodable column names, a missing, null, non-integer
or wrongly sized ``label`` column all raise :class:`~dataio.errors.FormatError` naming the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dataio.errors import FormatError

__all__ = ["label_column", "parquet_table"]


def parquet_table(data: bytes, url: str) -> Any:
    """``data`` (the bytes of ``url``, checksum already checked) as a ``pyarrow.Table``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # The bytes are copied into memory arrow owns: parquet may drop its last reference to the source on one
    # of arrow's pool threads, and releasing a Python-owned buffer there takes the GIL, which at interpreter
    # exit ends that thread with a forced unwind through C++ code: "terminate called without an active
    # exception" (seen in 3-8 of 20 runs of `dataio verify` with pyarrow 26; apache/arrow#34314).
    sink = pa.BufferOutputStream()
    sink.write(data)
    try:
        table = pq.read_table(pa.BufferReader(sink.getvalue()), use_threads=False, pre_buffer=False)
        table.column_names  # noqa: B018 - arrow decodes the names (UTF-8) only when asked: ask now
        return table
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise FormatError(
            f"{url}: not a readable Parquet index ({exc}); `dataio verify` checks the whole dataset, and packing "
            f"it again rewrites the index"
        ) from exc


def label_column(table: Any, samples: int, where: str) -> np.ndarray:
    """The ``label`` column of the index ``table`` as int64, one per sample; :class:`FormatError` otherwise."""
    import pyarrow as pa

    if "label" not in table.column_names:
        raise FormatError(f"{where}: the sample index has no 'label' column; `dataio verify` checks it")
    column = table.column("label")
    if not pa.types.is_integer(column.type) or column.null_count:
        raise FormatError(
            f"{where}: the 'label' column is {column.type} with {column.null_count} nulls, expected int64 "
            "without nulls; `dataio verify` checks the index"
        )
    if len(column) != samples:
        raise FormatError(f"{where}: {len(column)} rows for {samples} samples; `dataio verify` checks it")
    try:
        return column.cast(pa.int64()).to_numpy()
    except pa.ArrowInvalid as exc:  # e.g. uint64 labels beyond int64
        raise FormatError(f"{where}: 'label' values do not fit int64: {exc}") from exc
