"""Backend dispatch: which store serves which location, and the errors for missing or unreachable backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dataio import open_dataset
from dataio.storage import FsspecStore, LocalStore, StorageError, open_store


def test_paths_and_file_urls_use_pread_everything_else_fsspec(tmp_path: Path) -> None:
    assert isinstance(open_store(tmp_path), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    assert isinstance(open_store("memory://bucket/ds"), FsspecStore)
    assert open_store("memory://bucket/ds").default_threads > LocalStore(tmp_path).default_threads


def test_hdfs_dispatches_to_pyarrow_and_fails_clearly_without_a_cluster() -> None:
    # No HDFS can run here: pyarrow's HadoopFileSystem needs a JVM + libhdfs. The address is loopback only.
    with pytest.raises(StorageError) as err:
        open_dataset("hdfs://127.0.0.1:1/datasets/in1k")
    message = str(err.value)
    assert message.startswith("hdfs://127.0.0.1:1/datasets/in1k: cannot open the hdfs filesystem")
    assert "JAVA_HOME" in message and "HADOOP_HOME" in message


def test_unknown_protocol() -> None:
    with pytest.raises(ValueError, match="no fsspec filesystem is registered for nosuch://"):
        open_dataset("nosuch://bucket/ds")


@pytest.mark.parametrize(("url", "module", "extra"), [("s3://b/ds", "s3fs", "s3"), ("oss://b/ds", "ossfs", "oss")])
def test_missing_backend_names_the_extra(url: str, module: str, extra: str) -> None:
    code = f"""
import sys
sys.modules[{module!r}] = sys.modules["obstore"] = None  # as if the packages were not installed
import dataio
try:
    dataio.open_dataset({url!r})
except ImportError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert f"needs the '{module}' package: pip install 'dataio[{extra}]'" in out.stdout, out.stderr


def test_storage_options_are_never_in_error_messages() -> None:
    secret = "s3cr3t-Key-Value"
    with pytest.raises(Exception) as err:
        open_dataset("memory://nothing-here/ds", storage_options={"secret_marker": secret})
    assert secret not in str(err.value) and secret not in repr(err.value)
