"""Pack refuses symlinks in its source unless asked to follow them; FIFOs and devices always (issue 13, item 5)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from dataio import open_dataset
from dataio.cli import main
from dataio.errors import PackError
from dataio.pack import PackOptions, pack
from tests.helpers import run_with_timeout

OPTS = PackOptions(shard_size=400_000)


@pytest.fixture
def source(synth_dir: Path, tmp_path: Path) -> Path:
    """A private copy of a few classes of the synth ImageFolder."""
    dst = tmp_path / "src"
    shutil.copytree(synth_dir, dst)
    return dst


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def pack_with_timeout(*args: object, seconds: float = 60.0, **kw: object) -> object:
    """``pack(*args, **kw)``; a hang fails the test instead of blocking the run."""
    return run_with_timeout(lambda: pack(*args, **kw), seconds=seconds)  # type: ignore[arg-type]


def test_a_symlinked_image_is_refused_unless_following(source: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.jpg"
    victim = next(_class_dirs(source)[0].iterdir())
    shutil.copy(victim, outside)
    link = victim.with_name("zz-linked.jpg")
    link.symlink_to(outside)
    with pytest.raises(PackError) as err:
        pack_with_timeout(source, tmp_path / "out", OPTS)
    assert "zz-linked.jpg" in str(err.value) and "symbolic link" in str(err.value)
    assert "--follow-symlinks" in str(err.value)
    assert any("zz-linked.jpg" in path for path, _ in err.value.bad_items)
    pack_with_timeout(source, tmp_path / "out2", PackOptions(shard_size=400_000, follow_symlinks=True))
    keys = {open_dataset(tmp_path / "out2")[i]["key"] for i in range(len(open_dataset(tmp_path / "out2")))}
    assert f"{link.parent.name}/zz-linked.jpg" in keys


def test_a_symlinked_class_folder_is_refused_unless_following(source: Path, tmp_path: Path) -> None:
    cls = _class_dirs(source)[-1]
    moved = tmp_path / "elsewhere"
    shutil.move(cls, moved)
    cls.symlink_to(moved, target_is_directory=True)
    with pytest.raises(PackError, match="symbolic link") as err:
        pack_with_timeout(source, tmp_path / "out", OPTS)
    assert cls.name in str(err.value)
    report = pack_with_timeout(source, tmp_path / "out2", PackOptions(shard_size=400_000, follow_symlinks=True))
    assert report.num_samples == sum(len(list(d.iterdir())) for d in _class_dirs(source))  # type: ignore[attr-defined]


@pytest.mark.parametrize("follow", [False, True])
def test_fifos_and_devices_are_always_refused(source: Path, tmp_path: Path, follow: bool) -> None:
    cls = _class_dirs(source)[0]
    fifo = cls / "fifo.jpg"
    os.mkfifo(fifo)
    dev = cls / "zero.jpg"
    if os.geteuid() == 0:
        os.mknod(dev, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    else:
        dev.symlink_to("/dev/zero")
    opts = PackOptions(shard_size=400_000, follow_symlinks=follow, on_error="skip")
    with pytest.raises(PackError) as err:
        pack_with_timeout(source, tmp_path / "out", opts, seconds=30)
    msg = str(err.value)
    assert "fifo.jpg" in msg and "FIFO" in msg and "zero.jpg" in msg


def test_cli_follow_symlinks_flag(source: Path, tmp_path: Path) -> None:
    victim = next(_class_dirs(source)[0].iterdir())
    victim.with_name("zz-linked.jpg").symlink_to(victim)
    assert main(["pack", str(source), str(tmp_path / "a"), "--no-progress", "--shard-size", "400KB"]) != 0
    args = ["--no-progress", "--shard-size", "400KB", "--follow-symlinks"]
    assert main(["pack", str(source), str(tmp_path / "b"), *args]) == 0


def test_list_sources_and_the_source_itself_are_checked(source: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.JPEG"
    os.mkfifo(fifo)
    linked = tmp_path / "linked.JPEG"
    linked.symlink_to(next(_class_dirs(source)[0].iterdir()))
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,label\n{fifo},0\n{linked},1\n")
    with pytest.raises(PackError) as err:
        pack_with_timeout(listing, tmp_path / "out", OPTS, seconds=30)
    assert "pipe.JPEG" in str(err.value) and "FIFO" in str(err.value) and "linked.JPEG" in str(err.value)
    fifo_tar = tmp_path / "source.tar"
    os.mkfifo(fifo_tar)
    with pytest.raises(PackError, match=r"source\.tar.*FIFO"):
        pack_with_timeout(fifo_tar, tmp_path / "out2", OPTS, seconds=30)
