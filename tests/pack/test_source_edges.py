"""Source edge cases: file names that are not UTF-8, symlink loops under --follow-symlinks (issue 19, item 13)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import dataio
from dataio import open_dataset
from dataio.errors import PackError
from dataio.pack import PackOptions, pack

OPTS = PackOptions(shard_size=400_000)
ENV = {**os.environ, "PYTHONPATH": str(Path(dataio.__file__).parents[1])}  # this checkout's dataio


@pytest.fixture
def source(synth_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(synth_dir, dst)
    return dst


def _first_class(root: Path) -> Path:
    return sorted(p for p in root.iterdir() if p.is_dir())[0]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "dataio", "pack", *args, "--no-progress", "--shard-size", "400KB"]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)


@pytest.fixture
def bad_name(source: Path) -> bytes:
    """A JPEG whose file name is not UTF-8 (byte 0xff), made with a bytes path; returns that path."""
    cls = _first_class(source)
    path = os.fsencode(cls) + b"/bad\xff.jpg"
    with open(path, "wb") as f:
        f.write(next(cls.glob("*.JPEG")).read_bytes())
    return path


def test_a_non_utf8_name_is_skipped_with_a_warning_naming_it(
    source: Path, tmp_path: Path, bad_name: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    shown = f"{_first_class(source)}/bad\\xff.jpg"
    with caplog.at_level(logging.WARNING, logger="dataio.pack"):
        report = pack(source, tmp_path / "out", PackOptions(shard_size=400_000, on_error="skip"))
    assert report.num_samples == len(list(source.rglob("*.JPEG")))
    assert [p for p, _ in report.skipped] == [shown]
    assert any(shown in r.getMessage() and "not valid UTF-8" in r.getMessage() for r in caplog.records)
    ds = open_dataset(tmp_path / "out")
    assert ds.manifest.skipped[0]["path"] == shown
    assert len(ds) == report.num_samples
    done = _cli(str(source), str(tmp_path / "cli"), "--on-error", "skip")
    assert done.returncode == 0, done.stderr
    assert f"skipped {shown}: file name is not valid UTF-8" in done.stdout


def test_a_non_utf8_name_fails_the_pack_by_default_naming_it(source: Path, tmp_path: Path, bad_name: bytes) -> None:
    shown = f"{_first_class(source)}/bad\\xff.jpg"
    with pytest.raises(PackError) as err:
        pack(source, tmp_path / "out", OPTS)
    assert shown in str(err.value) and "--on-error skip" in str(err.value)
    assert err.value.bad_items == [(shown, err.value.bad_items[0][1])]
    done = _cli(str(source), str(tmp_path / "cli"))
    assert done.returncode == 2 and shown in done.stderr and "Traceback" not in done.stderr


def test_a_symlink_loop_is_reported_and_the_real_files_packed(
    source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cls = _first_class(source)
    (cls / "a").symlink_to("..", target_is_directory=True)
    (cls / "b").symlink_to("a", target_is_directory=True)
    (cls / "self.jpg").symlink_to("self.jpg")  # a file link that loops on itself
    follow = PackOptions(shard_size=400_000, follow_symlinks=True)
    with caplog.at_level(logging.WARNING, logger="dataio.pack"):
        report = pack(source, tmp_path / "out", follow)
    assert report.num_samples == len(list(source.rglob("*.JPEG")))
    warned = " ".join(r.getMessage() for r in caplog.records)
    for link in ("a", "b", "self.jpg"):
        assert f"{cls / link}: a symbolic link loop" in warned
    done = _cli(str(source), str(tmp_path / "cli"), "--follow-symlinks")
    assert done.returncode == 0, done.stderr
    assert f"{cls / 'a'}: a symbolic link loop" in done.stderr and "Traceback" not in done.stderr
    assert len(open_dataset(tmp_path / "cli")) == report.num_samples


def test_a_dangling_followed_link_is_refused_by_name(source: Path, tmp_path: Path) -> None:
    cls = _first_class(source)
    (cls / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(PackError, match=r"gone\.jpg: cannot be read"):
        pack(source, tmp_path / "out", PackOptions(shard_size=400_000, follow_symlinks=True))


def test_a_non_utf8_member_name_in_a_tar_is_skipped_by_name(source: Path, tmp_path: Path) -> None:
    archive = tmp_path / "train.tar"
    cls = _first_class(source)
    with tarfile.open(archive, "w", encoding="utf-8", errors="surrogateescape") as tf:
        for f in sorted(source.rglob("*.JPEG")):
            tf.add(f, arcname=f.relative_to(source).as_posix())
        tf.add(next(cls.glob("*.JPEG")), arcname=f"{cls.name}/bad\udcff.jpg")  # the byte 0xff in the archive
    with pytest.raises(PackError, match=r"train\.tar:.*/bad\\xff\.jpg"):
        pack(archive, tmp_path / "fail", OPTS)
    report = pack(archive, tmp_path / "out", PackOptions(shard_size=400_000, on_error="skip"))
    assert report.skipped == ((f"{archive}:{cls.name}/bad\\xff.jpg", report.skipped[0][1]),)
    assert report.num_samples == len(list(source.rglob("*.JPEG")))
