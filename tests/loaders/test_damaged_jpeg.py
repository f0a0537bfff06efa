"""Damaged and oversized JPEGs get one verdict: the same on the native kernel and the Python path, whatever the crop.

Real JPEGs of every flavour (baseline 4:2:0 / 4:4:4, progressive, restart markers, grayscale, an EXIF segment holding
a thumbnail with its own FF D9) are cut, cut and closed with an EOI (entropy data that ends early), and corrupted
near their end; each damaged file is decoded with crops that reach its damage and crops that stop far above it.
The structural check (``dw_jpeg_end``) and its Python twin must agree on every cut and on fuzzed bytes. A 1.9 KB
file declaring 13377 x 13377 must be refused without a large allocation. scripts/sanitize should run this module.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import dataio
from dataio.errors import SampleError
from dataio.loaders import native
from dataio.loaders.image.decode import DecodeError, decode_crop_resize, read_header
from dataio.loaders.image.jpeg_check import MAX_PIXELS, TRUNCATED, jpeg_end
from dataio.loaders.image.transforms import center_crop_box
from dataio.pack import PackOptions, pack
from tests.helpers import jpeg_with_size

needs_native = pytest.mark.skipif(not native.AVAILABLE, reason="dataio._native is not built")
ROOT = Path(__file__).resolve().parents[2]
FLAVOURS = ["baseline-420", "444", "progressive", "restart-markers", "grayscale", "exif-thumbnail"]


def _encode(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def variants(synth_dir: Path) -> dict[str, bytes]:
    img = Image.open(sorted(synth_dir.rglob("*.JPEG"))[3]).convert("RGB")
    thumb = _encode(img.resize((40, 30)), quality=70)  # FF D8 ... FF D9 inside an APP1 segment
    return {
        "baseline-420": _encode(img, quality=90),
        "444": _encode(img, quality=90, subsampling=0),
        "progressive": _encode(img, quality=85, progressive=True),
        "restart-markers": _encode(img, quality=90, restart_marker_blocks=2),
        "grayscale": _encode(img.convert("L"), quality=90),
        "exif-thumbnail": _encode(img, quality=80, exif=b"Exif\x00\x00" + thumb),
    }


def _cuts(n: int) -> list[int]:
    """Every cut near both ends and a dense sample in between."""
    return sorted({*range(0, min(n, 700)), *range(max(0, n - 64), n), *np.linspace(0, n - 1, 400).astype(int)})


def _corrupt(data: bytes, where: float, seed: int) -> bytes:
    """Bytes of the entropy data around ``where`` (a fraction of the file) replaced by random non-0xFF bytes."""
    raw = bytearray(data)
    at = int(len(raw) * where)
    rng = np.random.default_rng(seed)
    for j in range(at, min(at + 24, len(raw) - 2)):
        if raw[j] != 0xFF and raw[j - 1] != 0xFF:
            raw[j] = int(rng.integers(0, 255))
    return bytes(raw)


def _verdict(data: bytes, box: tuple[float, ...], size: int, crop_first: bool, use_native: bool) -> str:
    """'ok' or 'error': what a pipeline does with this image and crop (native: the kernel, then the Python path
    for what it leaves, as ImagePipeline.process and the loader do)."""
    try:
        header = read_header(data)
        if use_native and header.turbo:
            out = np.zeros((3, size, size), np.uint8)
            if native.require().decode_into(data, box, False, out, crop_first) is None:
                return "ok"
        decode_crop_resize(data, box, (size, size), crop_first=crop_first, header=header)
    except DecodeError:
        return "error"
    return "ok"


def _boxes(width: int, height: int) -> list[tuple[float, ...]]:
    return [
        (0, 0, width, min(16, height)),  # the top rows only: far above damage near the end
        (0, 0, width // 4 + 1, height // 4 + 1),
        (width / 3, height - min(20, height), width, height),  # the bottom rows
        (0, 0, width, height),
        center_crop_box(height, width, 32, 0.875),
    ]


def _damaged(data: bytes) -> dict[str, bytes]:
    n = len(data)
    out = {f"cut-{c}": data[:c] for c in np.linspace(n // 5, n - 1, 12).astype(int)}
    out |= {f"cut-{c}+EOI": data[:c] + b"\xff\xd9" for c in np.linspace(n // 5, n - 8, 6).astype(int)}
    out |= {f"corrupt-{w}": _corrupt(data, w, seed) for seed, w in enumerate((0.6, 0.8, 0.95))}
    return out


@needs_native
def test_structure_check_agrees_with_its_twin_on_every_cut(variants: dict[str, bytes]) -> None:
    m = native.require()
    for name, data in variants.items():
        assert m.jpeg_end(data) == jpeg_end(data) == len(data), name
        for cut in _cuts(len(data)):
            got = m.jpeg_end(data[:cut])
            assert got == jpeg_end(data[:cut]) and got < 0, (name, cut, got)
            if cut >= 2:
                assert got == TRUNCATED, (name, cut, got)
        assert m.jpeg_end(data + b"trailing \xff\xd9 garbage") == len(data)  # ends at the first EOI after a scan


@needs_native
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_structure_check_agrees_with_its_twin_on_fuzzed_bytes(variants: dict[str, bytes], data: st.DataObject) -> None:
    raw = bytearray(variants[data.draw(st.sampled_from(sorted(variants)))])
    for _ in range(data.draw(st.integers(0, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.sampled_from([0x00, 0xFF, 0xD9, 0xDA, 0xD0]))
    blob = bytes(raw[: data.draw(st.integers(0, len(raw)))])
    if data.draw(st.booleans()):
        blob = data.draw(st.binary(max_size=64)) + blob
    assert native.require().jpeg_end(blob) == jpeg_end(blob)


@needs_native
@pytest.mark.parametrize("name", FLAVOURS)
def test_damaged_jpegs_get_one_verdict_on_every_path_and_crop(variants: dict[str, bytes], name: str) -> None:
    data = variants[name]
    width, height = read_header(data).width, read_header(data).height
    verdicts = {}
    for what, blob in _damaged(data).items():
        got = {
            (box, size, crop_first, use_native): _verdict(blob, box, size, crop_first, use_native)
            for box in _boxes(width, height)
            for size in (32, 8)
            for crop_first in (True, False)
            for use_native in (True, False)
        }
        assert len(set(got.values())) == 1, (what, got)
        verdicts[what] = next(iter(got.values()))
    # a cut file, and entropy data that ends before the image does, are errors on every path
    assert all(v == "error" for what, v in verdicts.items() if what.startswith("cut-")), verdicts


@needs_native
def test_the_kernel_refuses_damage_below_its_crop(variants: dict[str, bytes]) -> None:
    data = variants["baseline-420"]
    w = read_header(data).width
    out = np.zeros((3, 8, 8), np.uint8)
    for blob in (data[: len(data) * 3 // 4], data[: len(data) * 3 // 4] + b"\xff\xd9"):
        result = native.require().decode_into(blob, (0, 0, w, 8), False, out, True)
        assert result is not None and result[0] == native.module().STATUS_JPEG, result
    assert not out.any()  # refused images leave their output alone
    assert native.require().decode_into(data, (0, 0, w, 8), False, out, True) is None


@needs_native
def test_max_pixels_is_the_kernels() -> None:
    assert MAX_PIXELS == native.module().MAX_PIXELS


def test_the_python_path_refuses_damage_whatever_pil_allows(
    variants: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import ImageFile

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # PIL would now decode cut files, grey-filled
    for name, data in variants.items():
        w, h = read_header(data).width, read_header(data).height
        assert jpeg_end(data) == len(data), name
        for cut in np.linspace(len(data) // 4, len(data) - 1, 24).astype(int):
            assert jpeg_end(data[:cut]) == TRUNCATED, (name, cut)
            with pytest.raises(DecodeError, match=f"truncated.*{w}x{h}"):
                decode_crop_resize(data[:cut], (0, 0, w, h), (16, 16))
            if name != "progressive" and cut < len(data) - 64:  # (a cut progressive file can hold whole scans)
                with pytest.raises(DecodeError, match=f"ends before the {w}x{h} image"):
                    decode_crop_resize(data[:cut] + b"\xff\xd9", (0, 0, w, h), (16, 16))
    with pytest.raises(DecodeError, match="20000x20000 = 400000000 pixels, over the decode limit"):
        decode_crop_resize(jpeg_with_size(variants["444"], 20000, 20000), (0, 0, 8, 8), (8, 8))


def test_bombs_are_refused_without_a_large_memory_allocation(variants: dict[str, bytes], tmp_path: Path) -> None:
    small = _encode(Image.open(io.BytesIO(variants["baseline-420"])).convert("RGB").resize((32, 24)), quality=75)
    big = jpeg_with_size(small, 13377, 13377)  # 178.9 M pixels: just under the limit
    cases = {
        "truncated": big[: len(big) - 40],
        "ends-early": big[: len(big) - 40] + b"\xff\xd9",
        "over-limit": jpeg_with_size(small, 20000, 20000),
    }
    assert len(cases["truncated"]) < 2000
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
    natives = (True, False) if native.AVAILABLE else (False,)
    # PIL's own guards off, as training scripts often set them: they must not be what refuses these files
    script = textwrap.dedent(f"""
        import resource, sys
        import numpy as np
        from PIL import Image, ImageFile
        import dataio
        from dataio.loaders.image.decode import DecodeError
        from dataio.loaders.image.transforms import sample_rng
        Image.MAX_IMAGE_PIXELS = None
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        natives = {natives!r}
        pipes = [dataio.ImagePipeline(train=t, size=224, native=n) for t in (True, False) for n in natives]
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for name in ("truncated", "ends-early", "over-limit"):
            blob = open({str(tmp_path)!r} + "/" + name, "rb").read()
            for pipe in pipes:
                try:
                    pipe.process({{"image": blob}}, sample_rng(0, 0, 1))
                except DecodeError as exc:
                    print(name, pipe.train, pipe.native, "refused:", exc)
                else:
                    print(name, pipe.train, pipe.native, "DELIVERED")
        print("growth_mb", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1 + 3 * 2 * len(natives) and not any("DELIVERED" in line for line in lines), run.stdout
    assert all("13377x13377" in line for line in lines if line.startswith("truncated")), run.stdout
    assert all("truncated" in line.split("refused:")[1] for line in lines if line.startswith("truncated"))
    assert all("ends before the 13377x13377" in line for line in lines if line.startswith("ends-early")), run.stdout
    assert all("20000x20000" in line and "limit" in line for line in lines if line.startswith("over-limit"))
    assert float(lines[-1].split()[1]) < 300, run.stdout


def _damage_for_pack(files: list[Path]) -> list[str]:
    """Damages three images in ways pack's header/trailer check lets through; returns their names."""
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) * 2 // 3] + b"\xff\xd9")  # entropy data that ends early
    small = Image.open(files[9]).convert("RGB").resize((64, 48))
    data = _encode(small, quality=90, comment=b"\xff\xd9")  # a comment holding FF D9 near the end
    files[9].write_bytes(data[: len(data) * 3 // 5])  # cut: the top rows still decode
    files[17].write_bytes(_corrupt(files[17].read_bytes(), 0.9, 3))  # corrupt near the end
    return [files[i].name for i in (2, 9, 17)]


@needs_native
def test_the_loader_delivers_the_same_samples_native_and_python(synth_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(synth_dir, src)
    names = _damage_for_pack(sorted(src.rglob("*.JPEG")))
    pack(src, tmp_path / "ds", PackOptions(shard_size=400_000))
    ds = dataio.open_dataset(tmp_path / "ds")

    def epochs(use_native: bool, on_error: str) -> list[tuple[list[torch.Tensor], list[list[int]], int]]:
        pipe = dataio.ImagePipeline(train=True, size=32, native=use_native)
        loader = dataio.DataLoader(ds, batch_size=4, pipeline=pipe, num_workers=2, on_error=on_error, seed=5)
        got = []
        for epoch in range(3):  # other crops each epoch
            loader.set_epoch(epoch)
            batches = list(loader)
            got.append(([b[0] for b in batches], [b[1].tolist() for b in batches], loader.stats()["skipped"]))
        return got

    with_native, without = epochs(True, "skip"), epochs(False, "skip")
    for (a_img, a_lab, a_skip), (b_img, b_lab, b_skip) in zip(with_native, without, strict=True):
        assert a_lab == b_lab and a_skip == b_skip, (a_lab, b_lab, a_skip, b_skip)
        assert all(torch.allclose(x, y, atol=0.05) for x, y in zip(a_img, b_img, strict=True))  # pixels within ±2
    assert with_native[0][1] == with_native[1][1] == with_native[2][1]  # the same samples, whatever the crops
    assert 2 <= with_native[0][2] <= 3  # the cut and the early-ending files at least
    for use_native in (True, False):
        with pytest.raises(SampleError, match="|".join(names)):
            epochs(use_native, "raise")


@pytest.mark.skipif(not __import__("dataio.loaders.dali.pipeline").loaders.dali.pipeline.dali_available(),
                    reason="needs nvidia-dali")  # fmt: skip
def test_dali_refuses_the_same_cut_and_oversized_files(synth_dir: Path, tmp_path: Path) -> None:
    """DALI decodes with its own decoder; the checks every path makes before decoding run in its feeder too, so
    a cut JPEG (whose top rows DALI would decode) and an over-limit header are left out there as well."""
    src = tmp_path / "src"
    shutil.copytree(synth_dir, src)
    files = sorted(src.rglob("*.JPEG"))
    small = Image.open(files[9]).convert("RGB").resize((64, 48))
    data = _encode(small, quality=90, comment=b"\xff\xd9")  # pack's trailer check sees the comment's FF D9
    files[9].write_bytes(data[: len(data) * 3 // 5])  # cut: no EOI after the scan
    files[4].write_bytes(jpeg_with_size(_encode(small, quality=90), 20000, 20000))  # over the pixel limit
    pack(src, tmp_path / "ds", PackOptions(shard_size=400_000))
    ds = dataio.open_dataset(tmp_path / "ds")
    bad = {files[i].relative_to(src).as_posix() for i in (4, 9)}
    want = [int(ds.labels[i]) for i in range(len(ds)) if ds[i]["key"] not in bad]
    for backend in ("dali", "cpu"):
        pipe = dataio.ImagePipeline(train=False, size=32, backend=backend)
        loader = dataio.DataLoader(ds, batch_size=4, pipeline=pipe, num_workers=2, on_error="skip")
        assert torch.cat([lab for _, lab in loader]).tolist() == want, backend
        assert loader.stats()["skipped"] == 2, backend
    with pytest.raises(SampleError, match="|".join(sorted(bad))):
        list(dataio.DataLoader(ds, batch_size=4, pipeline=dataio.ImagePipeline(train=False, size=32, backend="dali")))
