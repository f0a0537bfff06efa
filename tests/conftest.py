"""Session fixtures: a small natural-photo ImageFolder made by ``dataio synth`` and its packed dataset."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from dataio.pack import PackOptions, pack
from dataio.pack.synth import synth_imagefolder
from tests.fuzzing import Fuzz

SYNTH_IMAGES = 48
SYNTH_CLASSES = 4
SHARD_SIZE = 400_000  # several shards for the ~45 KB synth JPEGs

#: The fuzz targets' hypothesis profile (tests/fuzzing.py): examples per target sized so tests/format's fuzz modules
#: take ~30 s in CI; the deadline is generous (a loaded machine must not fail it) and catches only a parser that
#: crawls, e.g. through a size it should have refused. ``pytest --fuzz-seconds S`` fuzzes longer.
settings.register_profile(
    "fuzz",
    max_examples=600,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


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
    parser.addoption(
        "--fuzz-seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="fuzz every parser for at least S seconds (rounds of fresh random examples) instead of the CI bound",
    )


@pytest.fixture
def fuzz(request: pytest.FixtureRequest) -> Fuzz:
    """``fuzz(target, *strategies, examples=[…])``: runs ``target`` on hypothesis examples (see tests/fuzzing.py)."""
    return Fuzz(request.config.getoption("--fuzz-seconds"))


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--no-native"):
        from dataio.loaders import native, rings

        native.AVAILABLE = False
        rings.NATIVE_RINGS = False
        native._IMPORT_ERROR = ImportError("disabled by pytest --no-native")
