"""``open_dataset`` / ``ShardDataset``: the map-style torch Dataset over a packed dataset."""

from __future__ import annotations

import pickle
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch.utils.data

from dataio import ShardDataset, open_dataset


def test_map_style_dataset_basics(packed: Path, synth_dir: Path) -> None:
    ds = open_dataset(packed)
    assert isinstance(ds, ShardDataset) and isinstance(ds, torch.utils.data.Dataset)
    assert len(ds) == int(ds.shard_sizes.sum()) == ds.manifest.num_samples
    first, last = ds[0], ds[len(ds) - 1]
    assert set(first) == {"key", "label", "image"}
    assert isinstance(first["key"], str) and isinstance(first["label"], int) and isinstance(first["image"], bytes)
    assert ds[-1] == last
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]
    with pytest.raises(IndexError):
        ds[-len(ds) - 1]
    assert ds.classes == sorted(p.name for p in synth_dir.iterdir())
    assert ds.manifest.classes == tuple(ds.classes)


def test_one_ranged_read_per_sample(packed: Path) -> None:
    ds = open_dataset(packed)
    calls: list[tuple[str, int, int]] = []
    real = ds.store.read_range
    ds.store.read_range = lambda p, o, n: calls.append((p, o, n)) or real(p, o, n)  # type: ignore[method-assign]
    ds[0]
    assert len(calls) == 2  # the shard index, then the sample
    ds[1]
    assert len(calls) == 3 and calls[-1] == ds.record_range(1)


def test_iter_shard_streams_the_same_samples(packed: Path) -> None:
    ds = open_dataset(packed)
    start = 0
    for shard, n in enumerate(ds.shard_sizes):
        streamed = list(ds.iter_shard(shard))
        assert streamed == [ds[i] for i in range(start, start + int(n))]
        start += int(n)


def test_pickle_round_trip_reopens_the_store(packed: Path) -> None:
    ds = open_dataset(packed)
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == len(ds) and clone[3] == ds[3]


def test_sample_index_readable_by_pandas_pyarrow_duckdb(packed: Path) -> None:
    ds = open_dataset(packed)
    table = ds.index_table()
    assert table.column_names == ["key", "label", "shard", "position", "offset", "length"]
    df = pd.read_parquet(packed / "index.parquet")
    assert len(df) == len(ds)
    np.testing.assert_array_equal(df["label"].to_numpy(), ds.labels)
    for i in (0, len(ds) // 2, len(ds) - 1):
        row = df.iloc[i]
        assert (row["shard"], row["position"]) == ds.locate(i)
        assert ds.manifest.shards[row["shard"]].path == ds.record_range(i)[0]
        assert (row["offset"], row["length"]) == ds.record_range(i)[1:]
        assert row["key"] == ds[i]["key"]
    sql = f"select label, count(*) from '{packed}/index.parquet' group by label order by label"
    counts = duckdb.sql(sql).fetchall()
    assert [c for _, c in counts] == np.bincount(ds.labels).tolist()


def test_torch_dataloader_over_a_shard_dataset(packed: Path) -> None:
    ds = open_dataset(packed)
    loader = torch.utils.data.DataLoader(ds, batch_size=5, num_workers=2, collate_fn=list)
    keys = [s["key"] for batch in loader for s in batch]
    assert keys == [ds[i]["key"] for i in range(len(ds))]


def test_unsupported_options_are_refused_not_ignored(packed: Path) -> None:
    with pytest.raises(TypeError, match="cache_size"):
        open_dataset(packed, cache_size="1GB")
    with pytest.raises(TypeError, match="cache_limit needs cache_dir"):
        open_dataset(packed, cache_limit="1GB")
    with pytest.raises(ValueError, match="storage_options apply to URLs"):
        open_dataset(packed, storage_options={"anon": True})
    assert open_dataset(packed, verify=False)[0] == open_dataset(packed)[0]


def test_a_truncated_index_without_a_recorded_checksum_names_the_file(packed_copy: Path) -> None:

    from dataio.errors import FormatError
    from tests.helpers import edit_manifest

    # a dataset packed before the manifest recorded the index's checksum (or its own)
    edit_manifest(packed_copy, lambda d: d.pop("index_sha256", None), seal=False)
    index = packed_copy / "index.parquet"
    index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
    ds = open_dataset(packed_copy)
    with pytest.raises(FormatError, match=r"index\.parquet: not a readable Parquet index"):
        ds.index_table()


def test_open_dataset_options_are_explicit_keyword_only_arguments(packed: Path) -> None:
    """Issue 20 item 4: no ``**kw`` pass-through; a misspelt option fails as Python's own TypeError."""
    import inspect

    params = inspect.signature(open_dataset).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY] == [
        "verify", "threads", "coalesce_gap", "retry", "cache_dir", "cache_limit"
    ]  # fmt: skip
    with pytest.raises(TypeError, match="thread"):
        open_dataset(packed, thread=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="cache_limit needs cache_dir"):
        open_dataset(packed, cache_limit="1GB")
    with pytest.raises(ValueError, match="not a size"):
        open_dataset(packed, cache_dir=packed.parent / "c", cache_limit="lots")
