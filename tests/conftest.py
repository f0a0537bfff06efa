"""Session fixtures: a small natural-photo ImageFolder made by ``dataio synth`` and its packed dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dataio.pack import PackOptions, pack
from dataio.pack.synth import synth_imagefolder

SYNTH_IMAGES = 48
SYNTH_CLASSES = 4
SHARD_SIZE = 400_000  # several shards for the ~45 KB synth JPEGs


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "train"
    synth_imagefolder(out, SYNTH_IMAGES, SYNTH_CLASSES, seed=7)
    return out


@pytest.fixture(scope="session")
def packed(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "ds"
    pack(synth_dir, out, PackOptions(shard_size=SHARD_SIZE))
    return out


@pytest.fixture
def packed_copy(packed: Path, tmp_path: Path) -> Path:
    """A private copy of the packed dataset that a test may corrupt."""
    dst = tmp_path / "ds"
    shutil.copytree(packed, dst)
    return dst


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-native",
        action="store_true",
        help="run as if dataio._native were not built: every pipeline takes the pure-Python path",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--no-native"):
        from dataio.loaders import native, rings

        native.AVAILABLE = False
        rings.NATIVE_RINGS = False
        native._IMPORT_ERROR = ImportError("disabled by pytest --no-native")
