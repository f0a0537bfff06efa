"""obstore's errors as the exceptions dataio's retry policy classifies (see :func:`translate_error`): by type
(``obstore.exceptions``), and for its ``GenericError``, which has no attributes, by the HTTP status or error
kind in its text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from dataio.storage.redirects import refused_redirect
from dataio.storage.secrets import scrub_text

__all__ = ["ServerError", "translate_error"]

_STATUS = re.compile(r"status code: (\d{3})")
_TRANSIENT_KINDS = re.compile(r"kind: (Connect|Interrupted|Timeout|Request|Body|Decode)\b")
_S3_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]{1,300})</Message>")


class ServerError(OSError):
    """An HTTP status a server answered (``status``): 5xx and 429 are transient, other 4xx permanent."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def translate_error(exc: BaseException, secrets: Sequence[str] = (), endpoint: str | None = None) -> BaseException:
    """The exception :func:`~dataio.storage.retry.is_transient` classifies for obstore's ``exc``.

    Its message is obstore's first line (what failed, where, the status) with every string of ``secrets``
    removed; obstore's multi-line debug dump is left out. A redirect to another host that the guard refused
    (:mod:`dataio.storage.redirects`) becomes :class:`~dataio.storage.redirects.RedirectRefused` naming
    ``endpoint``.
    """
    text = str(exc)
    refused = refused_redirect(text, endpoint)
    if refused is not None:
        return refused
    first = text.split("\n\nDebug source")[0].strip().splitlines()[0] if text.strip() else type(exc).__name__
    first = first.split(": <?xml")[0].rstrip(": ")
    code, message = _S3_CODE.search(text), _S3_MESSAGE.search(text)
    if code:
        first += f" ({code.group(1)}" + (f": {message.group(1)})" if message else ")")
    first = scrub_text(first, secrets)
    errors = _obstore_exceptions()
    if isinstance(exc, FileNotFoundError | errors.NotFoundError):
        return FileNotFoundError(first)
    if isinstance(exc, errors.PermissionDeniedError | errors.UnauthenticatedError):
        return PermissionError(first)
    if not isinstance(exc, errors.GenericError):  # configuration, path, precondition, ...: not worth a retry
        return OSError(f"{type(exc).__name__}: {first}")
    # A GenericError carries no attributes: the HTTP status, or reqwest's error kind, is only in its text
    status = _STATUS.search(text)
    if status:
        return ServerError(first, int(status.group(1)))
    kind = _TRANSIENT_KINDS.search(text)
    if kind or "error sending request" in text:
        return (TimeoutError if kind and kind.group(1) == "Timeout" else ConnectionError)(
            first + (f" ({kind.group(1).lower()} error)" if kind else "")
        )
    return OSError(f"GenericError: {first}")


def _obstore_exceptions() -> Any:
    """``obstore.exceptions`` (imported on first use: obstore is optional, and only its stores call this)."""
    import obstore.exceptions

    return obstore.exceptions
