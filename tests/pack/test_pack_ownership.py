"""Pack deletes or replaces only files its own records prove it wrote, and never follows a symlinked folder inside
its output (issue 19, item 6)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dataio import open_dataset
from dataio.errors import PackError
from dataio.pack import PackOptions, pack

OPTS = PackOptions(shard_size=400_000)


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry below ``root``: file bytes, or ``-> target`` for a symlink (never followed)."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = f"-> {p.readlink()}"
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


def test_a_user_file_named_like_a_shard_is_never_deleted(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    user = out / "shards" / "shard-99999.dio"
    user.parent.mkdir(parents=True)
    user.write_bytes(b"my own data, not a shard")
    with pytest.raises(PackError, match=r"holds 1 file\(s\).*shards/shard-99999\.dio"):
        pack(synth_dir, out, OPTS)
    assert user.read_bytes() == b"my own data, not a shard"
    pack(synth_dir, out, OPTS, overwrite=True)
    pack(synth_dir, out, PackOptions(shard_size=200_000), overwrite=True)  # another plan: its stale shards go
    assert user.read_bytes() == b"my own data, not a shard"
    shards = {s.path for s in open_dataset(out).manifest.shards}
    assert {f"shards/{p.name}" for p in (out / "shards").glob("shard-*.dio")} == shards | {"shards/shard-99999.dio"}


@pytest.mark.parametrize("name", ["shards/shard-00000.dio", "index.parquet", ".dataio-pack/shard-00000.dio.json"])
def test_a_user_file_at_a_name_pack_must_write_is_not_replaced(synth_dir: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(b"the user's own file")
    with pytest.raises(PackError, match="did not create"):
        pack(synth_dir, out, OPTS)
    with pytest.raises(PackError, match=rf"must write {name} but did not write"):
        pack(synth_dir, out, OPTS, overwrite=True)
    assert snapshot(out) == {name: b"the user's own file"}


def test_a_resized_shard_of_an_earlier_pack_is_no_longer_pack_s(synth_dir: Path, packed: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    shutil.copytree(packed, out)
    last = sorted((out / "shards").glob("shard-*.dio"))[-1]
    last.write_bytes(b"the user replaced this file")  # a record names it, but not with this size
    pack(synth_dir, out, PackOptions(shard_size=10**7), overwrite=True)  # one shard: the others are stale
    assert last.read_bytes() == b"the user replaced this file"
    assert len(open_dataset(out)) == len(list(synth_dir.rglob("*.JPEG")))


def test_temp_named_files_pack_did_not_journal_are_foreign(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    planted = {"shards/.shard-00001.dio.tmp-123-0123abcd": b"user", ".manifest.json.tmp-1-89abcdef": b"{"}
    for rel, data in planted.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    with pytest.raises(PackError, match=r"holds 2 file\(s\)"):
        pack(synth_dir, out, OPTS)
    pack(synth_dir, out, OPTS, overwrite=True)
    assert {rel: (out / rel).read_bytes() for rel in planted} == planted


@pytest.mark.parametrize("folder", ["shards", ".dataio-pack"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_symlinked_folder_inside_the_output_is_never_followed(
    synth_dir: Path, packed: Path, tmp_path: Path, folder: str, overwrite: bool
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("shard-00000.dio", "shard-99999.dio", "shard-00000.dio.json", "notes.txt"):
        (victim / name).write_bytes(f"the user's {name}".encode())
    out = tmp_path / "out"
    shutil.copytree(packed, out)  # an earlier pack of the same output: its records name shard-00000.dio
    shutil.rmtree(out / folder)
    (out / folder).symlink_to(victim, target_is_directory=True)
    before = snapshot(victim)
    with pytest.raises(PackError) as err:
        pack(synth_dir, out, PackOptions(shard_size=200_000), overwrite=overwrite)
    assert f"{out / folder}: is a symbolic link" in str(err.value)
    assert snapshot(victim) == before
    assert (out / folder).is_symlink()


def test_the_output_itself_may_be_a_symlink(synth_dir: Path, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    pack(synth_dir, tmp_path / "link", OPTS)
    assert len(open_dataset(real)) == len(list(synth_dir.rglob("*.JPEG")))


@pytest.mark.parametrize("name", ["shards/shard-00000.dio", "manifest.json", "index.parquet"])
def test_a_link_at_a_name_pack_must_write_is_not_replaced(synth_dir: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"the user's file")
    (out / name).symlink_to(victim)
    (out / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(PackError, match=rf"must write {name} but did not write"):
        pack(synth_dir, out, OPTS, overwrite=True)
    victim.unlink()  # now dangling too: still not pack's to replace
    with pytest.raises(PackError, match=rf"must write {name} but did not write"):
        pack(synth_dir, out, OPTS, overwrite=True)
    assert snapshot(out) == {name: f"-> {victim}", "dangling": f"-> {tmp_path / 'nowhere'}"}


def test_a_malformed_record_of_this_plan_gets_the_shard_rewritten(
    synth_dir: Path, packed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    shutil.copytree(packed, out)
    (out / "manifest.json").unlink()
    record = out / ".dataio-pack" / "shard-00001.dio.json"
    doc = json.loads(record.read_bytes())
    del doc["info"]["num_samples"]  # still names the shard with its size and sha256: pack's, but unusable
    doc["skipped_positions"] = [10**9]
    record.write_text(json.dumps(doc))
    report = pack(synth_dir, out, OPTS)
    assert report.written_shards == 1 and report.reused_shards == report.num_shards - 1
    assert snapshot(out)["shards/shard-00001.dio"] == (packed / "shards" / "shard-00001.dio").read_bytes()
