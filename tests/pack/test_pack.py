"""``dataio pack`` from image folders: labels, bytes, determinism, resume, errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dataio import open_dataset
from dataio.errors import PackError
from dataio.pack import PackOptions, pack, parse_size
from dataio.pack.sources import IMG_EXTENSIONS


def torchvision_imagefolder(root: Path) -> list[tuple[str, int]]:
    """torchvision.datasets.ImageFolder's make_dataset, restated: (relative path, class index) in its order."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    out = []
    for idx, cls in enumerate(classes):
        for dirpath, _, fnames in sorted(os.walk(root / cls, followlinks=True)):
            for fname in sorted(fnames):
                if fname.lower().endswith(IMG_EXTENSIONS):
                    out.append((Path(dirpath, fname).relative_to(root).as_posix(), idx))
    return out


def dataset_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".dataio-pack" not in p.parts
    }


def test_labels_and_order_match_torchvision_imagefolder(synth_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(synth_dir, src)
    first = sorted(src.iterdir())[0]
    (first / "nested" / "deeper").mkdir(parents=True)
    jpeg = next(first.glob("*.JPEG")).read_bytes()
    (first / "nested" / "b.jpg").write_bytes(jpeg)
    (first / "nested" / "deeper" / "a.JpEg").write_bytes(jpeg)
    (first / "notes.txt").write_text("not an image")
    (src / "stray.JPEG").write_bytes(jpeg)  # outside any class folder: ignored, like torchvision
    pack(src, tmp_path / "ds", PackOptions(shard_size=300_000))
    ds = open_dataset(tmp_path / "ds")
    expected = torchvision_imagefolder(src)
    assert [(s["key"], s["label"]) for s in (ds[i] for i in range(len(ds)))] == expected
    assert ds.classes == sorted(p.name for p in src.iterdir() if p.is_dir())
    for i, (rel, _) in enumerate(expected):
        assert ds[i]["image"] == (src / rel).read_bytes()


def test_read_back_byte_identical_with_labels(synth_dir: Path, packed: Path) -> None:
    ds = open_dataset(packed)
    assert len(ds) == len(list(synth_dir.rglob("*.JPEG")))
    assert len(ds.manifest.shards) > 1
    for i in range(len(ds)):
        s = ds[i]
        cls = s["key"].split("/")[0]
        assert s["image"] == (synth_dir / s["key"]).read_bytes()
        assert ds.classes[s["label"]] == cls
    np.testing.assert_array_equal(ds.labels, [ds[i]["label"] for i in range(len(ds))])


def test_one_and_two_workers_give_identical_bytes(synth_dir: Path, packed: Path, tmp_path: Path) -> None:
    pack(synth_dir, tmp_path / "w2", PackOptions(shard_size=400_000, workers=2))
    assert dataset_files(packed) == dataset_files(tmp_path / "w2")


def test_shuffled_order_is_a_seeded_permutation(synth_dir: Path, packed: Path, tmp_path: Path) -> None:
    sorted_keys = [open_dataset(packed)[i]["key"] for i in range(len(open_dataset(packed)))]

    def keys(seed: int, name: str) -> list[str]:
        pack(synth_dir, tmp_path / name, PackOptions(shard_size=400_000, order="shuffled", seed=seed))
        ds = open_dataset(tmp_path / name)
        return [ds[i]["key"] for i in range(len(ds))]

    a, a2, b = keys(1, "a"), keys(1, "a2"), keys(2, "b")
    assert sorted(a) == sorted(sorted_keys) and a != sorted_keys
    assert a == a2 and a != b
    assert dataset_files(tmp_path / "a") == dataset_files(tmp_path / "a2")


_BLOCKING_PACK = """
import sys, time
import dataio.pack.readahead as ra
real = ra._open_regular
def blocking(path):
    if path.endswith("blocked.JPEG"):
        time.sleep(3600)
    return real(path)
ra._open_regular = blocking
from dataio.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_pack_resumes_to_identical_bytes(synth_dir: Path, tmp_path: Path) -> None:
    """A pack blocked mid-way (opening its last image never returns) is SIGKILLed; the rerun reuses its finished
    shards and produces exactly the bytes of an uninterrupted pack. (A FIFO blocked it once: pack refuses
    FIFOs now.)"""
    src = tmp_path / "src"
    shutil.copytree(synth_dir, src)
    (src / "zzz-last").mkdir()
    blocked = src / "zzz-last" / "blocked.JPEG"
    shutil.copy(next(synth_dir.rglob("*.JPEG")), blocked)
    out = tmp_path / "resumed"
    args = ["pack", str(src), str(out), "--shard-size", "120KB", "--no-progress"]
    cmd = [sys.executable, "-m", "dataio", *args]
    blocking = [sys.executable, "-c", _BLOCKING_PACK, *args]
    proc = subprocess.Popen(blocking, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        shards = []
        while time.monotonic() < deadline:
            shards = sorted((out / "shards").glob("shard-*.dio"))
            records = list((out / ".dataio-pack").glob("*.json")) if (out / ".dataio-pack").exists() else []
            if len(records) >= len(list(synth_dir.rglob("*.JPEG"))) // 4:
                break
            time.sleep(0.02)
        time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert shards and not (out / "manifest.json").exists()
    assert any(p.name.endswith(tuple("0123456789abcdef")) and ".tmp-" in p.name for p in (out / "shards").iterdir())
    assert list((out / ".dataio-pack").glob("temps-*.log"))  # the journal naming those temp files: pack's proof
    blocked.unlink()
    (src / "zzz-last").rmdir()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert " reused)" in done.stdout and not done.stdout.endswith("0 reused)\n"), done.stdout
    pack(synth_dir, tmp_path / "straight", PackOptions(shard_size=parse_size("120KB")))
    assert dataset_files(out) == dataset_files(tmp_path / "straight")
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or p.name.startswith("temps-")]


def corrupt_copy(synth_dir: Path, dst: Path) -> list[Path]:
    shutil.copytree(synth_dir, dst)
    classes = sorted(dst.iterdir())
    victims = [next(classes[0].glob("*.JPEG")), sorted(classes[2].glob("*.JPEG"))[-1]]
    victims[0].write_bytes(victims[0].read_bytes()[:3000])  # truncated download
    victims[1].write_bytes(b"")  # empty file
    text = classes[1] / "readme.jpg"
    text.write_text("this is not a JPEG")
    return [*victims, text]


def test_on_error_fail_lists_every_bad_path(synth_dir: Path, tmp_path: Path) -> None:
    bad = corrupt_copy(synth_dir, tmp_path / "src")
    with pytest.raises(PackError) as err:
        pack(tmp_path / "src", tmp_path / "ds", PackOptions(shard_size=300_000))
    listed = {Path(p) for p, _ in err.value.bad_items}
    assert listed == set(bad)
    for path in bad:
        assert str(path) in str(err.value)
    assert "truncated JPEG" in str(err.value) and "empty file" in str(err.value)
    assert "not a recognised image" in str(err.value)
    assert not (tmp_path / "ds" / "manifest.json").exists()
    # the same output then packed with --on-error skip reuses the shards that had no bad image
    report = pack(tmp_path / "src", tmp_path / "ds", PackOptions(shard_size=300_000, on_error="skip"))
    assert report.reused_shards > 0
    ds = open_dataset(tmp_path / "ds")
    assert {s["path"] for s in ds.manifest.skipped} == {str(p) for p in bad}
    assert len(ds) == len(list(synth_dir.rglob("*.JPEG"))) - 2
    keys = {ds[i]["key"] for i in range(len(ds))}
    assert not keys & {p.relative_to(tmp_path / "src").as_posix() for p in bad}


def test_rerun_reuses_everything_and_refuses_a_different_dataset(synth_dir: Path, packed_copy: Path) -> None:
    before = dataset_files(packed_copy)
    report = pack(synth_dir, packed_copy, PackOptions(shard_size=400_000))
    assert report.reused_shards == report.num_shards and report.written_shards == 0
    assert dataset_files(packed_copy) == before
    with pytest.raises(PackError, match="different dataset"):
        pack(synth_dir, packed_copy, PackOptions(shard_size=200_000))
    report = pack(synth_dir, packed_copy, PackOptions(shard_size=200_000), overwrite=True)
    assert report.num_shards > len(json.loads(before["manifest.json"])["shards"])
    assert sorted(p.name for p in (packed_copy / "shards").iterdir()) == [
        s.path.split("/")[-1] for s in open_dataset(packed_copy).manifest.shards
    ]


def test_a_tampered_finished_shard_is_rewritten_not_reused(synth_dir: Path, packed_copy: Path) -> None:
    before = dataset_files(packed_copy)
    shard = sorted((packed_copy / "shards").iterdir())[1]
    data = bytearray(shard.read_bytes())
    data[100] ^= 1
    shard.write_bytes(data)
    (packed_copy / "manifest.json").unlink()
    report = pack(synth_dir, packed_copy, PackOptions(shard_size=400_000))
    assert report.written_shards == 1
    assert dataset_files(packed_copy) == before


def test_reencode_shrinks_and_is_deterministic(synth_dir: Path, tmp_path: Path) -> None:
    import io

    from PIL import Image

    opts = PackOptions(shard_size=100_000, max_size=128, quality=80)
    pack(synth_dir, tmp_path / "r1", opts)
    pack(synth_dir, tmp_path / "r2", PackOptions(**{**opts.__dict__, "workers": 2}))
    assert dataset_files(tmp_path / "r1") == dataset_files(tmp_path / "r2")
    ds = open_dataset(tmp_path / "r1")
    for i in range(len(ds)):
        with Image.open(io.BytesIO(ds[i]["image"])) as im:
            assert max(im.size) == 128 and im.format == "JPEG"
    assert ds.manifest.total_bytes < sum(p.stat().st_size for p in synth_dir.rglob("*.JPEG")) / 3


def test_pack_to_an_fsspec_url(synth_dir: Path, packed: Path) -> None:
    pack(synth_dir, "memory://dataio-test/ds", PackOptions(shard_size=400_000, workers=2))
    remote, local = open_dataset("memory://dataio-test/ds"), open_dataset(packed)
    assert len(remote) == len(local)
    for i in range(len(local)):
        assert remote[i] == local[i]


@pytest.mark.parametrize(
    ("text", "value"),
    [("256MB", 256 * 10**6), ("8MB", 8 * 10**6), ("1GiB", 2**30), ("4096", 4096), ("1.5KiB", 1536), ("64k", 65536)],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size("12 parsecs")
    with pytest.raises(ValueError, match="order"):
        PackOptions(order="random")
    with pytest.raises(ValueError, match="quality"):
        PackOptions(quality=0)


def test_an_output_path_that_is_a_file_is_refused_clearly(synth_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"not a directory")
    for output in (target, target / "sub"):
        with pytest.raises(PackError, match=r"out\.bin is a file, not a directory"):
            pack(synth_dir, output)
    assert target.read_bytes() == b"not a directory"  # untouched


def test_an_empty_class_folder_is_refused_as_imagefolder_does(synth_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(synth_dir, src)
    (src / "zz_empty").mkdir()
    (src / "zz_empty" / "notes.txt").write_text("no images here")
    with pytest.raises(PackError, match=r"no image files in the class folder\(s\) \['zz_empty'\]"):
        pack(src, tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()
