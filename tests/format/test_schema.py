from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dataio.errors import FormatError
from dataio.format import Field, Schema, ShardWriter
from dataio.format.ndarray import decode_ndarray, encode_ndarray
from dataio.format.shard import FOOTER_SIZE, iter_records, parse_footer, parse_header, parse_index

ALL_TYPES = Schema(
    (
        Field("b", "bytes"),
        Field("s", "str"),
        Field("i", "int"),
        Field("f", "float"),
        Field("a", "ndarray"),
        Field("bz", "bytes", "zstd"),
        Field("az", "ndarray", "zstd"),
    )
)


def write_shard(schema: Schema, samples: list[dict]) -> bytes:
    buf = io.BytesIO()
    w = ShardWriter(buf, schema)
    for s in samples:
        w.add(s)
    info = w.close()
    data = buf.getvalue()
    assert info.size == len(data) and info.num_samples == len(samples)
    return data


def read_shard(data: bytes) -> list[dict]:
    header = parse_header(data)
    footer = parse_footer(data[-FOOTER_SIZE:], len(data))
    index = parse_index(data[footer.index_offset : -FOOTER_SIZE], footer.num_samples, footer.index_offset,
                        footer.index_crc32)
    return list(iter_records(io.BytesIO(data), header.schema, index))


def assert_sample_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
            np.testing.assert_array_equal(a[k], b[k])
        elif isinstance(a[k], float) and math.isnan(a[k]):
            assert math.isnan(b[k])
        else:
            assert a[k] == b[k] and type(a[k]) is type(b[k])


def test_round_trip_every_field_type() -> None:
    sample = {
        "b": b"\x00\xff raw",
        "s": "ünïcødé ✓",
        "i": -(2**63),
        "f": 3.25,
        "a": np.arange(12, dtype=np.float32).reshape(3, 4),
        "bz": b"abc" * 1000,
        "az": np.zeros((100, 3), dtype=np.int16),
    }
    (back,) = read_shard(write_shard(ALL_TYPES, [sample]))
    assert_sample_equal({**sample, "b": bytes(sample["b"])}, back)


def test_zstd_field_is_compressed() -> None:
    plain = Schema((Field("x", "bytes"),))
    packed = Schema((Field("x", "bytes", "zstd"),))
    sample = {"x": b"0123456789" * 10_000}
    assert len(write_shard(packed, [sample])) < len(write_shard(plain, [sample])) / 20


samples_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "b": st.binary(max_size=300),
            "s": st.text(max_size=40),
            "i": st.integers(-(2**63), 2**63 - 1),
            "f": st.floats(allow_nan=True),
            "a": hnp.arrays(
                dtype=st.sampled_from([np.uint8, np.int32, np.float64, np.bool_, np.complex64, ">i4"]),
                shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
            ),
            "bz": st.binary(max_size=300),
            "az": hnp.arrays(dtype=np.float32, shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=6)),
        }
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(samples_strategy)
def test_writer_reader_property(samples: list[dict]) -> None:
    back = read_shard(write_shard(ALL_TYPES, samples))
    assert len(back) == len(samples)
    for a, b in zip(samples, back, strict=True):
        assert_sample_equal(a, b)


@pytest.mark.parametrize("dtype", [object, "U4", [("x", "i4")], "M8[s]"])
def test_ndarray_refuses_non_numeric_dtypes(dtype: object) -> None:
    with pytest.raises(TypeError):
        encode_ndarray(np.zeros(2, dtype=dtype))


def test_ndarray_decode_refuses_object_dtype_bytes() -> None:
    good = bytearray(encode_ndarray(np.zeros(2, dtype=np.int64)))
    good[1:4] = b"|O8"  # the stored dtype string, rewritten to "object"
    with pytest.raises(FormatError, match="plain numeric"):
        decode_ndarray(bytes(good))


def test_ndarray_size_mismatch_is_reported() -> None:
    data = encode_ndarray(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(FormatError, match="needs 16 bytes"):
        decode_ndarray(data[:-1])


def test_schema_validation() -> None:
    with pytest.raises(ValueError, match="unknown type"):
        Field("x", "pickle")
    with pytest.raises(ValueError, match="invalid field name"):
        Field("../x", "bytes")
    with pytest.raises(ValueError, match="duplicate"):
        Schema((Field("x", "int"), Field("x", "str")))
    with pytest.raises(ValueError, match="missing"):
        ALL_TYPES.encode({"b": b""})
    with pytest.raises(TypeError, match="field 'i'"):
        Schema((Field("i", "int"),)).encode({"i": "7"})
