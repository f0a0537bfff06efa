"""Credentials out of the S3 clients' own logs: a filter on the botocore, aiobotocore, s3fs and fsspec loggers.

At DEBUG level botocore logs every request it sends, headers included: the ``Authorization`` header names the
access key id (``Credential=AKID/…``), ``x-amz-security-token`` carries the session token, and its signing log
prints the canonical request with that token. While a dataio store serving through fsspec exists, those loggers
carry :class:`CredentialFilter`, which rewrites each record before any handler sees it: the secrets of every
live store (:func:`~dataio.storage.secrets.secrets_of` of its options), any ``Credential=…/`` and any
``x-amz-security-token`` value become ``***``. A store's secrets leave the filter when the store is garbage
collected. The filter runs only for records a logger emits (at the default WARNING level, none of these).
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import weakref
from collections.abc import Sequence

from dataio.storage.secrets import scrub_text

__all__ = ["CredentialFilter", "guard_client_logs"]

#: Loggers of the client libraries (created here if their module has not been imported yet, so the filter is
#: on them before they log); loggers below these prefixes that already exist get it too.
_PREFIXES = ("botocore", "aiobotocore", "s3fs", "fsspec", "urllib3", "aiohttp")
_KNOWN = (
    "botocore.auth",
    "botocore.endpoint",
    "botocore.hooks",
    "botocore.httpsession",
    "botocore.parsers",
    "botocore.retryhandler",
    "botocore.credentials",
    "botocore.utils",
    "botocore.client",
    "botocore.awsrequest",
    "botocore.httpchecksum",
    "aiobotocore.endpoint",
    "aiobotocore.httpsession",
    "aiobotocore.credentials",
    "aiobotocore.utils",
    "aiobotocore.client",
)
_PATTERNS = (
    re.compile(r"(Credential=)[^/,\s'\"]+"),
    re.compile(r"(X-Amz-Credential=)[^&%/\s'\"]+", re.IGNORECASE),
    re.compile(r"(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s,}&]+", re.IGNORECASE),
    re.compile(r"(X-Amz-Security-Token=)[^&\s'\"]+", re.IGNORECASE),
)


class CredentialFilter(logging.Filter):
    """Rewrites a record's message without credentials (see the module docstring); never drops a record."""

    def __init__(self) -> None:
        super().__init__("dataio-credentials")
        self._lock = threading.Lock()
        self._secrets: dict[int, tuple[str, ...]] = {}
        self._ids = itertools.count()

    def register(self, owner: object, secrets: Sequence[str]) -> None:
        """Masks ``secrets`` until ``owner`` is garbage collected."""
        if not secrets:
            return
        key = next(self._ids)
        with self._lock:
            self._secrets[key] = tuple(secrets)
        weakref.finalize(owner, self._forget, key)

    def _forget(self, key: int) -> None:
        with self._lock:
            self._secrets.pop(key, None)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not format: leave it to logging's own error path
            return True
        with self._lock:
            secrets = sorted({s for group in self._secrets.values() for s in group}, key=len, reverse=True)
        clean = scrub_text(text, secrets)
        for pattern in _PATTERNS:
            clean = pattern.sub(r"\1***", clean)
        if clean != text:
            record.msg, record.args = clean, None
        return True


_FILTER = CredentialFilter()
_install_lock = threading.Lock()


def guard_client_logs(owner: object, secrets: Sequence[str]) -> None:
    """Puts the filter on the client libraries' loggers (idempotent) and masks ``secrets`` while ``owner``
    lives. Called when a store is made and again after its first request (loggers made by then get it)."""
    _FILTER.register(owner, secrets)
    install_filter()


def install_filter() -> None:
    """Adds the filter to every client logger that exists now (and to the known ones, creating them)."""
    with _install_lock:
        names = [n for n in list(logging.Logger.manager.loggerDict) if n.split(".")[0] in _PREFIXES]
        for name in {*names, *_PREFIXES, *_KNOWN}:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
