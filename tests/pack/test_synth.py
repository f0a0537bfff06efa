"""Tests of ``dataio synth``: determinism, layout, JPEG realism, class separability and the val layout."""

from __future__ import annotations

import argparse
import csv
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataio.commands import synth as synth_cmd
from dataio.pack import synth
from dataio.pack.synth import SynthReport, synth_imagefolder, synth_val, wnids

WNID = re.compile(r"^n\d{8}$")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _feature(path: Path) -> np.ndarray:
    """Normalised 8-bin-per-channel colour histogram of a 4x reduced image."""
    with Image.open(path) as im:
        px = np.asarray(im.convert("RGB").reduce(4)).reshape(-1, 3)
    return np.concatenate([np.bincount(px[:, c] // 32, minlength=8) / len(px) for c in range(3)])


@pytest.fixture(scope="module")
def train(tmp_path_factory: pytest.TempPathFactory) -> SynthReport:
    return synth_imagefolder(tmp_path_factory.mktemp("train"), 23, 4, seed=3)


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> SynthReport:
    """More classes than bundled photos (so photos are reused), 4 images each."""
    return synth_imagefolder(tmp_path_factory.mktemp("many"), 80, 20, seed=1)


@pytest.fixture(scope="module")
def val(tmp_path_factory: pytest.TempPathFactory, many: SynthReport) -> SynthReport:
    return synth_val(tmp_path_factory.mktemp("val"), 40, many.out, seed=1)


def test_deterministic_and_independent_of_workers(train: SynthReport, tmp_path: Path) -> None:
    again = synth_imagefolder(tmp_path / "w2", 23, 4, seed=3, workers=2)
    assert again.classes == train.classes
    assert _files(again.out) == _files(train.out)
    other = synth_imagefolder(tmp_path / "s4", 23, 4, seed=4)
    assert other.classes != train.classes
    assert sorted(_files(other.out).values()) != sorted(_files(train.out).values())


def test_layout_counts_and_names(train: SynthReport) -> None:
    root = train.out
    assert train.classes == sorted(train.classes) == wnids(4, seed=3)
    assert all(WNID.match(n) for n in train.classes)
    assert sorted(p.name for p in root.iterdir()) == train.classes
    counts = [len(list((root / n).iterdir())) for n in train.classes]
    assert counts == [6, 6, 6, 5]
    for n in train.classes:
        names = sorted(p.name for p in (root / n).iterdir())
        assert names == [f"{n}_{i:06d}.JPEG" for i in range(len(names))]
    files = _files(root)
    assert train.images == len(files) == 23
    assert train.total_bytes == sum(len(b) for b in files.values())
    assert train.seconds > 0 and train.images_per_second > 0


def test_wnids_are_stable_distinct_and_seeded() -> None:
    names = wnids(300, seed=7)
    assert names == wnids(300, seed=7) == sorted(names)
    assert len(set(names)) == 300 and all(WNID.match(n) for n in names)
    assert wnids(300, seed=8) != names


@pytest.mark.parametrize(
    ("images", "classes", "kw"),
    [(3, 4, {}), (0, 0, {}), (4, 2, {"quality": 0}), (4, 2, {"quality": 101}), (4, 2, {"workers": 0}),
     (4, 2, {"seed": -1})],
)  # fmt: skip
def test_invalid_arguments(tmp_path: Path, images: int, classes: int, kw: dict) -> None:
    with pytest.raises(ValueError):
        synth_imagefolder(tmp_path, images, classes, **kw)
    assert not any(tmp_path.rglob("*.JPEG"))


def test_valid_jpegs_of_imagenet_sizes(many: SynthReport) -> None:
    sizes = []
    for path in many.out.rglob("*.JPEG"):
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            im.load()
            sizes.append(im.size)
    assert len(sizes) == 80
    assert all(max(s) == 500 or s == (400, 300) for s in sizes)
    assert all(300 <= min(s) <= 500 for s in sizes)
    assert sizes.count((500, 375)) >= 0.4 * len(sizes)  # mostly landscape 500x375
    assert any(w < h for w, h in sizes)  # some portrait


def _reference_tables() -> dict[int, list[int]]:
    tables = {}
    for q in range(1, 101):
        buf = io.BytesIO()
        Image.new("RGB", (16, 16)).save(buf, "JPEG", quality=q)
        tables[q] = list(Image.open(buf).quantization[0])
    return tables


def _estimated_quality(path: Path, tables: dict[int, list[int]]) -> int:
    with Image.open(path) as im:
        luma = list(im.quantization[0])
    return min(tables, key=lambda q: sum(abs(a - b) for a, b in zip(tables[q], luma, strict=True)))


def test_jpeg_quality_near_requested(train: SynthReport, tmp_path: Path) -> None:
    tables = _reference_tables()
    for path in train.out.rglob("*.JPEG"):
        assert 87 <= _estimated_quality(path, tables) <= 93
        with Image.open(path) as im:
            assert 2 <= im.quantization[0][0] <= 4  # luminance DC step of q 85..95
    low = synth_imagefolder(tmp_path, 3, 1, quality=60)
    assert all(57 <= _estimated_quality(p, tables) <= 63 for p in low.out.rglob("*.JPEG"))


def test_natural_images_not_noise(many: SynthReport) -> None:
    for path in many.out.rglob("*.JPEG"):
        px = _pixels(path)
        assert 0.05 < path.stat().st_size / (px.shape[0] * px.shape[1]) < 0.8  # bytes per pixel
        grey = px.astype(np.float64).mean(axis=2)
        assert grey.std() > 8  # not flat
        corr = np.corrcoef(grey[:, :-1].ravel(), grey[:, 1:].ravel())[0, 1]
        assert corr > 0.8, (path, corr)


def test_classes_are_distinct_and_learnable(many: SynthReport) -> None:
    feats = {n: np.stack([_feature(p) for p in sorted((many.out / n).iterdir())]) for n in many.classes}
    centroids = {n: f.mean(axis=0) for n, f in feats.items()}
    spread = {n: np.linalg.norm(f - centroids[n], axis=1).mean() for n, f in feats.items()}
    pairs = [(a, b) for i, a in enumerate(many.classes) for b in many.classes[i + 1 :]]
    separated = sum(np.linalg.norm(centroids[a] - centroids[b]) > max(spread[a], spread[b]) for a, b in pairs)
    assert separated >= 0.9 * len(pairs)
    # leave-one-out nearest centroid: the classes can be told apart from colour statistics alone
    hits = total = 0
    for n, f in feats.items():
        for i in range(len(f)):
            own = np.delete(f, i, axis=0).mean(axis=0)
            dists = {m: np.linalg.norm(f[i] - (own if m == n else centroids[m])) for m in many.classes}
            hits += min(dists, key=dists.__getitem__) == n
            total += 1
    assert hits >= 0.8 * total


def test_val_layout_is_consistent(val: SynthReport, many: SynthReport) -> None:
    root = val.out
    assert val.classes == many.classes and val.images == 40
    images = sorted(p.name for p in (root / "val").iterdir())
    assert images == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 41)]
    synsets = (root / "synsets.txt").read_text().split()
    assert sorted(synsets) == many.classes and synsets != many.classes  # devkit order is not sorted
    gt = [int(x) for x in (root / "ILSVRC2012_validation_ground_truth.txt").read_text().split()]
    with open(root / "LOC_val_solution.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ImageId", "PredictionString"] and len(rows) == 41 and len(gt) == 40
    for i, (image_id, prediction) in enumerate(rows[1:]):
        assert image_id == f"ILSVRC2012_val_{i + 1:08d}"
        wnid, *box = prediction.split()
        assert wnid == synsets[gt[i] - 1]
        with Image.open(root / "val" / f"{image_id}.JPEG") as im:
            x0, y0, x1, y1 = map(int, box)
            assert 0 <= x0 < x1 <= im.width and 0 <= y0 < y1 <= im.height
    assert set(gt) == set(range(1, len(synsets) + 1))  # every class appears
    assert not [p for p in root.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_val_images_look_like_their_train_class(val: SynthReport, many: SynthReport) -> None:
    centroids = {n: np.mean([_feature(p) for p in (many.out / n).iterdir()], axis=0) for n in many.classes}
    rows = (val.out / "LOC_val_solution.csv").read_text().splitlines()[1:]
    hits = 0
    for row in rows:
        image_id, prediction = row.split(",")
        f = _feature(val.out / "val" / f"{image_id}.JPEG")
        hits += min(centroids, key=lambda n: np.linalg.norm(f - centroids[n])) == prediction.split()[0]
    assert hits >= 0.75 * len(rows)


def test_val_from_names_equals_val_from_folder(train: SynthReport, tmp_path: Path) -> None:
    a = synth_val(tmp_path / "a", 6, train.out, seed=2)
    b = synth_val(tmp_path / "b", 6, list(reversed(train.classes)), seed=2)
    c = synth_val(tmp_path / "c", 6, 4, seed=3)  # a class count: the names of wnids(4, seed)
    assert a.classes == b.classes == c.classes == train.classes
    assert _files(a.out) == _files(b.out)
    with pytest.raises(ValueError):
        synth_val(tmp_path / "d", 3, train.out)


def test_no_temp_files_and_failed_write_leaves_nothing(
    train: SynthReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not [p for p in train.out.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(synth.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        synth_imagefolder(tmp_path, 2, 1)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_clear_error_without_bundled_photos(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    synth.bundled_photos.cache_clear()
    monkeypatch.setattr(synth, "_package_dir", lambda name: None)
    try:
        with pytest.raises(FileNotFoundError, match="pip install scikit-image"):
            synth_imagefolder(tmp_path, 2, 1)
    finally:
        monkeypatch.undo()
        synth.bundled_photos.cache_clear()
    assert all(p.is_file() and p.parts[-3:-1] == ("skimage", "data") for p in synth.bundled_photos())


def test_cli_writes_train_and_val(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    synth_cmd.add_arguments(parser)
    out = tmp_path / "ds"
    argv = [
        str(out),
        "--images",
        "6",
        "--classes",
        "3",
        "--workers",
        "1",
        "--quality",
        "85",
        "--val-images",
        "4",
    ]
    assert synth_cmd.run(parser.parse_args(argv)) == 0
    line = capsys.readouterr().out.strip()
    assert "10 images" in line and "3 classes" in line and "images/s" in line and "MB" in line
    train_classes = sorted(p.name for p in (out / "train").iterdir())
    assert train_classes == wnids(3, seed=0)
    assert len(list((out / "val").iterdir())) == 4
    assert (out / "synsets.txt").read_text().split() != train_classes
    parser.parse_args([str(out), "--images", "1", "--classes", "1"])
    with pytest.raises(SystemExit):
        parser.parse_args([str(out), "--images", "0", "--classes", "1"])
