"""The manifest is sealed: ``manifest_sha256`` covers everything readers trust in it (class names, schema, counts,
paths, checksums), so a damaged manifest is refused by every reader and by ``dataio verify`` instead of changing
``ds.classes`` or switching the index check off (issue 19, item 9)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataio import open_dataset
from dataio.errors import ChecksumError, DataioError, ManifestError, UnsealedManifestWarning
from dataio.format import Manifest
from dataio.format.manifest import CHECKSUM_KEY
from dataio.inspection import verify_dataset
from tests.helpers import edit_manifest

#: The bit flips tried at every byte of the manifest (every single-bit change).
MASKS = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80)


def _flips(data: bytes):  # type: ignore[no-untyped-def]
    for at in range(len(data)):
        for mask in MASKS:
            bad = bytearray(data)
            bad[at] ^= mask
            yield at, bytes(bad)


def test_every_single_bit_flip_of_a_packed_manifest_is_refused_or_harmless(packed: Path) -> None:
    """On the old code 54 single-byte flips passed and changed ``ds.classes``; now a flip either changes nothing
    a reader uses (whitespace, an escape of the same character) or the manifest is refused."""
    data = (packed / "manifest.json").read_bytes()
    original = Manifest.loads(data)
    assert original.sealed and original.classes
    changed = []
    for at, bad in _flips(data):
        try:
            manifest = Manifest.loads(bad)
        except DataioError:
            continue
        if manifest != original or manifest.classes != original.classes or not manifest.sealed:
            changed.append(at)
    assert not changed, f"flips at byte offsets {changed[:20]} loaded as a different manifest"


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("a class name", lambda d: d["classes"].__setitem__(0, d["classes"][0][:-1] + "X")),
        ("the schema", lambda d: d["schema"][1].update(type="float")),
        ("two class names swapped", lambda d: d.update(classes=[d["classes"][1], d["classes"][0], *d["classes"][2:]])),
        ("the index checksum's key", lambda d: d.update(index_sha257=d.pop("index_sha256"))),
        ("the seal's key", lambda d: d.update(manifest_sha257=d.pop(CHECKSUM_KEY))),
    ],
)
def test_a_changed_manifest_fails_open_and_verify(packed_copy: Path, what: str, change) -> None:  # type: ignore[no-untyped-def]
    path = packed_copy / "manifest.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))  # changed but not sealed again: what a damaged disk or a hand edit gives
    with pytest.raises((ChecksumError, ManifestError), match=r"manifest\.json.*(manifest_sha256|unknown key)"):
        open_dataset(packed_copy)
    out = subprocess.run(
        [sys.executable, "-m", "dataio", "verify", str(packed_copy)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0, f"verify passed a manifest with {what} changed"
    assert "manifest.json" in out.stderr and "Traceback" not in out.stderr


def test_a_key_named_twice_is_refused(packed: Path) -> None:
    text = (packed / "manifest.json").read_text()
    twice = text.replace('"classes":', '"classes": ["x"], "classes":', 1)
    with pytest.raises(ManifestError, match="'classes' appears twice"):
        Manifest.loads(twice)


def test_an_older_manifest_loads_with_a_named_warning_and_verify_says_so(packed_copy: Path) -> None:
    edit_manifest(packed_copy, lambda d: None, seal=False)
    with pytest.warns(UnsealedManifestWarning, match=r"manifest\.json: the manifest has no manifest_sha256"):
        ds = open_dataset(packed_copy)
    assert not ds.manifest.sealed and ds.classes
    ds.close()
    report = verify_dataset(packed_copy)
    assert report.ok, report.problems
    assert any("no manifest_sha256" in w and "repack" in w for w in report.warnings)


def test_an_older_manifest_with_a_damaged_key_name_is_refused_not_downgraded(packed_copy: Path) -> None:
    """Before the seal, flipping ``index_sha256``'s name turned the index check off (a note in verify)."""
    edit_manifest(packed_copy, lambda d: d.update(index_sha257=d.pop("index_sha256")), seal=False)
    with pytest.raises(ManifestError, match=r"unknown key\(s\) 'index_sha257'"):
        open_dataset(packed_copy)


def test_a_sealed_manifest_without_index_sha256_fails_verify(packed_copy: Path) -> None:
    edit_manifest(packed_copy, lambda d: d.pop("index_sha256"))  # sealed again, as a writer that omitted it
    report = verify_dataset(packed_copy)
    assert not report.ok and any("sealed but records no index_sha256" in p for p in report.problems)
