"""``dataio._native`` when it was built, and the Python paths when it was not.

The extension (C sources in ``native/``, compiled by ``pip install``) holds the batch image kernel, the batch crop
windows and the lock-free rings. Everything here has a pure-Python fallback that gives the same results (the
windows bit-identical, the pixels within ±2 of 255); :data:`AVAILABLE` says whether the extension loaded, and a
missing extension is reported once, with the fix, the first time a pipeline would have used it.

``ImagePipeline(native=False)`` selects the Python path explicitly (tests run both).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    from dataio import _native
except ImportError as exc:  # not built: no compiler or no libjpeg headers at install time
    _native = None
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

__all__ = ["AVAILABLE", "JCS_NATIVE", "module", "require", "warn_missing"]

AVAILABLE: bool = _native is not None and hasattr(_native, "ImageKernel")
JCS_NATIVE = frozenset({1, 2, 3})  # libjpeg colour spaces the kernel converts: grayscale, RGB, YCbCr
_warned = False

FIX = (
    "install a C compiler and libjpeg-turbo's headers (Debian/Ubuntu: apt-get install gcc libjpeg62-turbo-dev; "
    "scripts/setup.sh does it), then reinstall dataio (pip install -e .)"
)


def module() -> Any:
    """The extension module, or None when it is not built."""
    return _native if AVAILABLE else None


def require() -> Any:
    """The extension module.

    Raises:
        RuntimeError: It is not built (says why and how to build it).
    """
    if not AVAILABLE:
        raise RuntimeError(f"dataio._native is not built ({_IMPORT_ERROR}): {FIX}")
    return _native


def warn_missing() -> None:
    """Warns once per process that the Python path runs instead of the native kernel."""
    global _warned
    if AVAILABLE or _warned:
        return
    _warned = True
    warnings.warn(
        f"dataio._native is not built ({_IMPORT_ERROR}): images are decoded by the slower Python path. Fix: {FIX}.",
        RuntimeWarning,
        stacklevel=3,
    )


def jpeg_headers(images: Sequence[Any]) -> np.ndarray:
    """``(n, 4)`` int32: width, height, libjpeg colour space and status (0: parsed) of each JPEG, in one call."""
    out = np.zeros((len(images), 4), dtype=np.int32)
    require().jpeg_headers(images, out)
    return out
