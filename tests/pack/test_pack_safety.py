"""Pack never deletes what it did not create, and leaves no processes behind when it is killed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dataio
from dataio import open_dataset
from dataio.cli import main
from dataio.errors import PackError
from dataio.pack import PackOptions, pack

FOREIGN = {
    "notes.txt": b"my notes",
    "images/cat.jpg": b"not dataio's",
    "shards/mine.dio": b"a .dio file pack did not name",
    "shards/README": b"hands off",
    ".dataio-pack/other.json": b"{}",
}


def _plant(root: Path) -> None:
    for rel, data in FOREIGN.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def test_an_output_with_foreign_files_is_refused_naming_them(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _plant(out)
    with pytest.raises(PackError) as err:
        pack(synth_dir, out, PackOptions(shard_size=400_000))
    msg = str(err.value)
    assert f"output {out}: holds 5 file(s) or folder(s) that dataio pack did not create" in msg
    for shown in (".dataio-pack/other.json", "images/", "notes.txt", "shards/README", "shards/mine.dio"):
        assert shown in msg
    assert "--overwrite" in msg
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(FOREIGN)


def test_overwrite_packs_beside_foreign_files_and_never_deletes_them(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _plant(out)
    pack(synth_dir, out, PackOptions(shard_size=400_000), overwrite=True)
    # an earlier plan's shards are replaced (pack made them); the foreign files stay, every rerun
    pack(synth_dir, out, PackOptions(shard_size=200_000), overwrite=True)
    for rel, data in FOREIGN.items():
        assert (out / rel).read_bytes() == data, rel
    shards = {s.path for s in open_dataset(out).manifest.shards}
    assert {f"shards/{p.name}" for p in (out / "shards").glob("shard-*.dio")} == shards


# Leaves temp files the way a killed pack does: each opened through pack's own writer, then SIGKILL.
_KILLED_WRITER = """
import os, signal, sys
from dataio.pack.owned_dir import OwnedDir
out, held = OwnedDir(sys.argv[1]), []
for path in sys.argv[2:]:
    held.append(out.open_atomic(path))
    held[-1].__enter__().write(b"half a file")
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_pack_s_own_files_are_not_foreign_so_a_rerun_needs_no_overwrite(
    synth_dir: Path, packed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    shutil.copytree(packed, out)
    (out / "manifest.json").unlink()  # an unfinished pack, with temp files of killed writers
    env = {**os.environ, "PYTHONPATH": str(Path(dataio.__file__).parents[1])}
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILLED_WRITER,
            str(out),
            "shards/shard-00001.dio",
            "manifest.json",
            ".dataio-pack/index.parquet.json",
        ],
        env=env,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL
    assert len(list(out.rglob(".*.tmp-*"))) == 3
    report = pack(synth_dir, out, PackOptions(shard_size=400_000))
    assert report.reused_shards == report.num_shards
    assert not list(out.rglob(".*.tmp-*"))
    assert not list((out / ".dataio-pack").glob("temps-*"))  # the journals go with their temp files


def test_the_cli_refuses_foreign_files_and_documents_overwrite(
    synth_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    _plant(out)
    assert main(["pack", str(synth_dir), str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"output {out}: holds 5" in err and "notes.txt" in err
    with pytest.raises(SystemExit):
        main(["pack", "--help"])
    assert "did not create" in capsys.readouterr().out.replace("\n", " ")
    assert main(["pack", str(synth_dir), str(out), "--no-progress", "--overwrite"]) == 0
    assert (out / "notes.txt").read_bytes() == FOREIGN["notes.txt"]


def test_a_url_output_with_foreign_objects_is_refused(synth_dir: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe_file("/dataio-safety/ds/shards/keep-me.dio", b"someone else's")
    with pytest.raises(PackError, match=r"memory://dataio-safety/ds: holds 1 .*shards/keep-me\.dio"):
        pack(synth_dir, "memory://dataio-safety/ds", PackOptions(shard_size=400_000))
    pack(synth_dir, "memory://dataio-safety/ds", PackOptions(shard_size=200_000), overwrite=True)
    pack(synth_dir, "memory://dataio-safety/ds", PackOptions(shard_size=400_000), overwrite=True)
    assert fs.cat_file("/dataio-safety/ds/shards/keep-me.dio") == b"someone else's"
    assert len(open_dataset("memory://dataio-safety/ds")) == len(list(synth_dir.rglob("*.JPEG")))


# A pack whose worker blocks forever opening one image: a spawned worker re-runs this module's top level (as
# __mp_main__), so the patch holds in the workers too. The marker says a worker is mid-shard.
_BLOCKING_PACK = """
import sys, time
from pathlib import Path
import dataio.pack.readahead as ra
real = ra._open_regular
def blocking(path):
    if path.endswith("blocked.JPEG"):
        Path(path + ".opened").write_text(str(__import__("os").getpid()))
        time.sleep(3600)
    return real(path)
ra._open_regular = blocking
if __name__ == "__main__":
    from dataio.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def _proc_stat(pid: int) -> tuple[int, str, str] | None:
    """``(parent pid, state, start time)`` of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0], fields[19]


def _descendants(root: int) -> dict[int, str]:
    """PID → start time of every live descendant of ``root``."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _proc_stat(int(entry))) is not None:
            children.setdefault(st[0], []).append(int(entry))
            starts[int(entry)] = st[2]
    out, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = starts[child]
            todo.append(child)
    return out


def _alive(pid: int, start: str) -> bool:
    st = _proc_stat(pid)
    return st is not None and st[2] == start and st[1] != "Z"  # a zombie has ended; a new start time is reuse


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_pack_ends_its_workers(synth_dir: Path, tmp_path: Path, sig: signal.Signals) -> None:
    src = tmp_path / "src"
    shutil.copytree(synth_dir, src)
    (src / "zzz-last").mkdir()
    blocked = src / "zzz-last" / "blocked.JPEG"
    shutil.copy(next(synth_dir.rglob("*.JPEG")), blocked)
    script = tmp_path / "blocking_pack.py"
    script.write_text(_BLOCKING_PACK)
    cmd = [
        sys.executable,
        str(script),
        "pack",
        str(src),
        str(tmp_path / "out"),
        "--workers",
        "2",
        "--shard-size",
        "120KB",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(dataio.__file__).parents[1])}  # this checkout's dataio
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    family: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while not Path(f"{blocked}.opened").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert Path(f"{blocked}.opened").exists(), proc.communicate(timeout=60)
        family = _descendants(proc.pid)
        worker = int(Path(f"{blocked}.opened").read_text())
        assert worker in family and len(family) >= 2, family  # two workers (and multiprocessing's tracker)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(_alive(p, s) for p, s in family.items()):
            time.sleep(0.1)
        left = [p for p, s in family.items() if _alive(p, s)]
        assert not left, f"processes of the killed pack still running: {left}"
    finally:
        for pid, start in family.items():  # never leave them behind, even when the test fails
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
