"""Credentials out of errors: the secrets in a store's options, and an exception chain scrubbed of them.

Guarantee: an exception a remote store raises carries none of the credentials of its ``storage_options``
(``key``, ``secret``, ``token`` and their ``aws_*`` spellings, ``password``, and the user and password of an
endpoint URL such as ``http://user:SECRET@host``) anywhere a user or a log may print it: not in its message,
``args``, ``__notes__`` or string attributes, nor in any exception reachable through ``__cause__`` and
``__context__`` (the client library's own errors included). Each secret is replaced by ``***``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["endpoint_of", "scrub_chain", "scrub_text", "secrets_of", "without_userinfo"]

_SECRET_KEYS = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "access_key_id",
        "secret_access_key",
        "session_token",
        "access_key_secret",
        "security_token",
    }
)
_NESTED = ("client_kwargs", "config_kwargs", "obstore")
_MASK = "***"
#: Shorter strings are not masked one by one (a one-letter user name would garble every message); a short
#: password is still masked as part of the whole ``user:password`` of its URL.
_MIN_LENGTH = 4


def endpoint_of(options: dict[str, Any]) -> str | None:
    """The endpoint URL of s3fs-style ``options`` (top level or in ``client_kwargs``), or None."""
    endpoint = options.get("endpoint_url") or dict(options.get("client_kwargs") or {}).get("endpoint_url")
    return str(endpoint) if endpoint else None


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` (for messages naming an endpoint)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _userinfo(value: str) -> Iterator[str]:
    if "://" not in value or "@" not in value:
        return
    try:
        parts = urlsplit(value)
    except ValueError:
        return
    userinfo = parts.netloc.rpartition("@")[0]
    for item in (userinfo, parts.username, parts.password):
        if item and len(item) >= _MIN_LENGTH:
            yield item
            yield unquote(item)


def secrets_of(options: dict[str, Any]) -> tuple[str, ...]:
    """Every credential string in ``options`` (and its nested ``client_kwargs``/``config_kwargs``/``obstore``),
    longest first (so a secret containing another is masked whole)."""
    found: set[str] = set()

    def visit(mapping: dict[str, Any]) -> None:
        for name, value in mapping.items():
            if name in _NESTED and isinstance(value, dict):
                visit(value)
            elif isinstance(value, str):
                if name.lower() in _SECRET_KEYS and len(value) >= _MIN_LENGTH:
                    found.add(value)
                found.update(_userinfo(value))

    visit(options)
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def scrub_text(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, _MASK)
    return text


def _scrub_value(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if isinstance(value, bytes):
        return _scrub_bytes(value, secrets)
    if type(value) is tuple:  # exactly: a named tuple (aiohttp's RequestInfo) keeps its type and fields
        return tuple(_scrub_value(v, secrets) for v in value)
    if type(value) is list:
        return [_scrub_value(v, secrets) for v in value]
    if type(value) is dict:
        return {k: _scrub_value(v, secrets) for k, v in value.items()}
    return value


def _scrub_bytes(value: bytes, secrets: Sequence[str]) -> bytes:
    for secret in secrets:
        raw = secret.encode("utf-8", "replace")
        if raw and raw in value:
            value = value.replace(raw, _MASK.encode())
    return value


def _reachable(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)
        todo.extend(x for x in getattr(e, "exceptions", ()) if isinstance(x, BaseException))


def scrub_chain(exc: BaseException, secrets: Sequence[str]) -> BaseException:
    """Removes ``secrets`` from ``exc`` and every exception reachable from it, in place; returns ``exc``.

    Scrubbed: ``args``, ``__notes__``, ``strerror``/``filename`` of an ``OSError``, and the string, bytes,
    tuple, list and dict values of each exception's attributes (botocore keeps the endpoint URL in ``kwargs``).
    """
    if not secrets:
        return exc
    for e in _reachable(exc):
        with contextlib.suppress(AttributeError, TypeError):
            e.args = _scrub_value(e.args, secrets)
        if isinstance(e, OSError):
            for attr in ("strerror", "filename", "filename2"):
                value = getattr(e, attr, None)
                if isinstance(value, str):
                    setattr(e, attr, scrub_text(value, secrets))
        attrs = getattr(e, "__dict__", None)
        if isinstance(attrs, dict):
            for name, value in list(attrs.items()):
                if name.startswith("__") and name != "__notes__":
                    continue
                cleaned = _scrub_value(value, secrets)
                if cleaned is not value:
                    with contextlib.suppress(TypeError):
                        attrs[name] = cleaned
    return exc
