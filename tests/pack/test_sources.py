"""Tar archives (ILSVRC layout), validation label files and file lists as pack sources."""

from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataio import open_dataset
from dataio.errors import PackError
from dataio.pack import PackOptions, pack
from dataio.pack.synth import synth_val

OPTS = PackOptions(shard_size=400_000)


def samples(root: Path) -> list[tuple[str, int, bytes]]:
    ds = open_dataset(root)
    return [(s["key"], s["label"], s["image"]) for s in (ds[i] for i in range(len(ds)))]


def shard_bytes(root: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((root / "shards").iterdir())]


def make_ilsvrc_train_tar(folder: Path, out: Path) -> Path:
    """ILSVRC2012_img_train.tar: a tar of per-class tars, member order deliberately not sorted."""
    with tarfile.open(out, "w") as outer:
        for cls in sorted(folder.iterdir(), reverse=True):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as inner:
                for f in sorted(cls.iterdir(), reverse=True):
                    inner.add(f, arcname=f.name)
            info = tarfile.TarInfo(f"{cls.name}.tar")
            info.size = buf.tell()
            buf.seek(0)
            outer.addfile(info, buf)
    return out


def test_tar_of_class_tars_packs_like_the_folder(synth_dir: Path, packed: Path, tmp_path: Path) -> None:
    tar = make_ilsvrc_train_tar(synth_dir, tmp_path / "train.tar")
    pack(tar, tmp_path / "from_tar", OPTS, progress=False)
    assert samples(tmp_path / "from_tar") == samples(packed)
    assert shard_bytes(tmp_path / "from_tar") == shard_bytes(packed)
    assert not list(tmp_path.glob("**/n*/*.JPEG")), "nothing is extracted to disk"


def test_flat_tar_with_class_folders(synth_dir: Path, packed: Path, tmp_path: Path) -> None:
    tar = tmp_path / "flat.tar"
    with tarfile.open(tar, "w") as tf:
        for cls in sorted(synth_dir.iterdir()):
            tf.add(cls, arcname=cls.name)
    pack(tar, tmp_path / "ds", OPTS, progress=False)
    assert samples(tmp_path / "ds") == samples(packed)


def test_tar_source_with_two_workers(synth_dir: Path, packed: Path, tmp_path: Path) -> None:
    tar = make_ilsvrc_train_tar(synth_dir, tmp_path / "train.tar")
    pack(tar, tmp_path / "ds", PackOptions(shard_size=400_000, workers=2))
    assert shard_bytes(tmp_path / "ds") == shard_bytes(packed)


def test_compressed_tar_is_refused_clearly(synth_dir: Path, tmp_path: Path) -> None:
    tar = tmp_path / "x.tar"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(next(synth_dir.iterdir()), arcname="a")
    with pytest.raises(PackError, match="not an uncompressed tar archive"):
        pack(tar, tmp_path / "ds", OPTS)


@pytest.fixture(scope="module")
def val_dir(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("val")
    synth_val(out, 12, synth_dir, seed=5)
    return out


def expected_val_labels(val_dir: Path, classes: list[str]) -> dict[str, int]:
    with open(val_dir / "LOC_val_solution.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    return {f"{r[0]}.JPEG": classes.index(r[1].split()[0]) for r in rows}


def test_val_labels_csv_and_devkit_map_to_train_classes(val_dir: Path, packed: Path, tmp_path: Path) -> None:
    train_classes = open_dataset(packed).classes
    expected = expected_val_labels(val_dir, train_classes)
    pack(val_dir / "val", tmp_path / "csv", OPTS, labels=val_dir / "LOC_val_solution.csv", classes=train_classes)
    pack(val_dir / "val", tmp_path / "devkit", OPTS, labels=val_dir / "ILSVRC2012_validation_ground_truth.txt",
         synsets=val_dir / "synsets.txt", classes=train_classes)
    for name in ("csv", "devkit"):
        got = {k: lab for k, lab, _ in samples(tmp_path / name)}
        assert got == expected
        assert open_dataset(tmp_path / name).classes == train_classes
    assert shard_bytes(tmp_path / "csv") == shard_bytes(tmp_path / "devkit")


def test_val_classes_from_cli(val_dir: Path, packed: Path, tmp_path: Path) -> None:
    from dataio.cli import main

    code = main(["pack", str(val_dir / "val"), str(tmp_path / "v"), "--labels",
                 str(val_dir / "ILSVRC2012_validation_ground_truth.txt"), "--synsets", str(val_dir / "synsets.txt"),
                 "--classes-from", str(packed), "--no-progress"])
    assert code == 0
    expected = expected_val_labels(val_dir, open_dataset(packed).classes)
    assert {k: lab for k, lab, _ in samples(tmp_path / "v")} == expected


def test_flat_val_tar_with_labels(val_dir: Path, packed: Path, tmp_path: Path) -> None:
    tar = tmp_path / "ILSVRC2012_img_val.tar"
    with tarfile.open(tar, "w") as tf:
        for f in sorted((val_dir / "val").iterdir()):
            tf.add(f, arcname=f.name)
    classes = open_dataset(packed).classes
    pack(tar, tmp_path / "t", OPTS, labels=val_dir / "LOC_val_solution.csv", classes=classes)
    pack(val_dir / "val", tmp_path / "f", OPTS, labels=val_dir / "LOC_val_solution.csv", classes=classes)
    assert samples(tmp_path / "t") == samples(tmp_path / "f")


def test_flat_folder_without_labels_is_refused(val_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PackError, match="needs --labels"):
        pack(val_dir / "val", tmp_path / "x", OPTS)


def test_unknown_wnid_is_refused(val_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PackError, match="not among"):
        pack(val_dir / "val", tmp_path / "x", OPTS, labels=val_dir / "LOC_val_solution.csv", classes=["n0"])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_file_list_sources(synth_dir: Path, tmp_path: Path, fmt: str) -> None:
    files = sorted(synth_dir.rglob("*.JPEG"))[:10]
    rows = [{"path": str(f.relative_to(synth_dir.parent)), "label": f.parent.name, "key": f"img{i:02d}"}
            for i, f in enumerate(files)]
    listing = synth_dir.parent / f"list-{fmt}.{fmt}"
    if fmt == "csv":
        with open(listing, "w", newline="") as fh:
            w = csv.DictWriter(fh, ["path", "label", "key"])
            w.writeheader()
            w.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), listing)
    pack(listing, tmp_path / "ds", OPTS)
    ds = open_dataset(tmp_path / "ds")
    classes = sorted({r["label"] for r in rows})
    assert ds.classes == classes
    got = {ds[i]["key"]: (ds[i]["label"], ds[i]["image"]) for i in range(len(ds))}
    assert got == {r["key"]: (classes.index(r["label"]), f.read_bytes()) for r, f in zip(rows, files, strict=True)}


def test_list_with_missing_file_fails_or_skips(synth_dir: Path, tmp_path: Path) -> None:
    listing = tmp_path / "l.csv"
    good = next(synth_dir.rglob("*.JPEG"))
    listing.write_text(f"path,label\n{good},0\n{tmp_path / 'missing.jpg'},1\n")
    with pytest.raises(PackError, match=r"missing\.jpg: cannot read"):
        pack(listing, tmp_path / "a", OPTS)
    report = pack(listing, tmp_path / "b", PackOptions(shard_size=400_000, on_error="skip"))
    assert report.num_samples == 1 and "missing.jpg" in report.skipped[0][0]
