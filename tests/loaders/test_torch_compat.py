"""torch's private names live in one module, each checked: present on the tested torch, a clear error naming the
torch version when missing, and nowhere else in dataio (issue 20, item 2)."""

from __future__ import annotations

import importlib
import io
import re
import tokenize
from pathlib import Path

import pytest
import torch

import dataio
from dataio.loaders import torch_compat

PACKAGE = Path(dataio.__file__).parent
#: A private attribute of torch (``torch._C``, ``torch.utils.data._utils``), or a private name imported from it.
PRIVATE = re.compile(r"\btorch(?:\.[A-Za-z]\w*)*\._[A-Za-z]\w*|from\s+torch[\w.]*\s+import\s+[^\n]*\b_[A-Za-z]\w*")


def _code(path: Path) -> str:
    """``path``'s source without comments and string literals (docstrings may name torch's internals)."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return " ".join(t.string for t in tokens if t.type not in (tokenize.COMMENT, tokenize.STRING)).replace(" . ", ".")


def test_every_private_name_is_present_on_the_tested_torch() -> None:
    assert torch_compat.missing() == []
    major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    assert (major, minor) in torch_compat.TESTED, f"torch {torch.__version__} is not in TESTED: check the names"


def test_no_other_module_uses_a_private_torch_name() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}: {m.group(0)}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "torch_compat.py"
        for m in PRIVATE.finditer(_code(path))
    ]
    assert not offenders, offenders


def test_the_pattern_sees_the_forms_it_must_catch() -> None:
    for text in ("torch._C._x(1)", "from torch.utils.data._utils import worker", "from torch.x import _Base"):
        assert PRIVATE.search(text), text
    for text in ("torch.utils.data.DataLoader", "torch.__version__", "import torch.nn.functional as F"):
        assert not PRIVATE.search(text), text


def test_a_missing_name_raises_a_clear_error_naming_the_torch_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_compat, "_pin_memory", None)
    with pytest.raises(
        torch_compat.TorchCompatError, match=rf"torch {re.escape(torch.__version__)} has no .*pin_memory"
    ):
        torch_compat.pin_memory(torch.zeros(1))
    monkeypatch.setattr(torch_compat, "_use_count", None)
    assert torch_compat.storage_use_count(torch.zeros(1)) is None  # the buffer pool then never reuses a buffer


def test_without_the_base_iterator_import_works_and_use_fails_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.utils.data.dataloader as dl

    monkeypatch.delattr(dl, "_BaseDataLoaderIter")
    try:
        compat = importlib.reload(torch_compat)
        assert "torch.utils.data.dataloader._BaseDataLoaderIter" in compat.missing()

        class Iterator(compat.BaseDataLoaderIter):  # what dataio.loaders.generic.threaded does at import
            pass

        with pytest.raises(compat.TorchCompatError, match=r"has no torch\.utils\.data\.dataloader\._BaseDataLoader"):
            Iterator(None)
    finally:
        monkeypatch.undo()
        importlib.reload(torch_compat)
    assert torch_compat.BaseDataLoaderIter is dl._BaseDataLoaderIter
