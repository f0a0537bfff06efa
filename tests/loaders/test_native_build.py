"""Where CI runs, dataio._native must have been built: a missing extension there is a failed build, not a skip."""

from __future__ import annotations

import os

import pytest

from dataio.loaders import native


def test_the_extension_is_built_where_ci_runs(request: pytest.FixtureRequest) -> None:
    if os.environ.get("CI") != "true" or request.config.getoption("--no-native"):
        pytest.skip("only enforced in CI (CI=true), and not under --no-native")
    assert native.AVAILABLE, f"dataio._native was not built: {native._IMPORT_ERROR} (see the pip install log)"


def test_a_missing_extension_is_explained_with_its_fix() -> None:
    if native.AVAILABLE:
        assert native.require() is native.module()
        return
    with pytest.raises(RuntimeError, match="libjpeg"):
        native.require()
