"""Which client serves an ``s3://`` URL, and the obstore configuration equivalent to s3fs ``storage_options``.

dataio reads ``s3://`` through obstore (the Rust ``object_store`` crate: ranged GETs for a fraction of s3fs's CPU,
without the GIL) when it is installed, and through s3fs otherwise. ``storage_options`` keep s3fs's spelling
either way, so one set of options works with both clients:

* ``key`` / ``secret`` / ``token`` (or ``aws_access_key_id`` …), ``anon``;
* ``endpoint_url`` (top level or in ``client_kwargs``), ``region_name`` (``client_kwargs`` or ``config_kwargs``);
* ``config_kwargs``: ``connect_timeout``, ``read_timeout``, ``s3.addressing_style``; botocore's ``retries`` and
  ``max_pool_connections`` are accepted and have no equivalent to set (dataio's RetryPolicy retries; obstore's
  pool has no cap);
* ``client``: ``"auto"`` (default), ``"obstore"`` or ``"fsspec"`` (s3fs) to choose the client;
* ``obstore``: a dict of further obstore ``S3Config`` keys (e.g. ``{"virtual_hosted_style_request": True}``).

Credentials not given in the options come from the environment as each client reads it (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``, instance metadata).
obstore does not read ``~/.aws`` profiles: with ``client="auto"``, an option it cannot express (``profile``,
``client_kwargs.verify``, …) or a profile to read (``AWS_PROFILE`` set and no key given) selects s3fs, and the
store's ``client_reason`` says why.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CLIENTS", "ObstoreSettings", "choose_client", "obstore_settings"]

#: Values of the ``client`` storage option.
CLIENTS = ("auto", "obstore", "fsspec")

#: s3fs/fsspec options that only tune fsspec's own caches: meaningless to obstore, harmless to drop.
_FSSPEC_ONLY = frozenset(
    {
        "skip_instance_cache",
        "use_listings_cache",
        "listings_expiry_time",
        "max_paths",
        "default_block_size",
        "default_fill_cache",
        "default_cache_type",
        "asynchronous",
        "loop",
        "cache_regions",
        "version_aware",
    }
)
_CREDENTIAL_KEYS = {
    "key": "access_key_id",
    "aws_access_key_id": "access_key_id",
    "secret": "secret_access_key",
    "aws_secret_access_key": "secret_access_key",
    "token": "session_token",
    "aws_session_token": "session_token",
}
_CLIENT_KWARGS = {"endpoint_url", "region_name", "aws_access_key_id", "aws_secret_access_key", "aws_session_token"}
_CONFIG_KWARGS = {"connect_timeout", "read_timeout", "region_name", "retries", "max_pool_connections", "s3"}


class UnsupportedOption(ValueError):
    """An s3fs storage option obstore cannot express; names the option, never its value."""


@dataclass(frozen=True)
class ObstoreSettings:
    """What :class:`~dataio.storage.obstore_store.ObstoreStore` hands obstore: ``S3Config`` and ``ClientConfig``.

    The repr leaves values out: they hold credentials.
    """

    config: dict[str, Any] = field(repr=False)
    client_options: dict[str, Any] = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("config", "client_options"):
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"{name} must be a dict")


def _seconds(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise UnsupportedOption(f"config_kwargs.{name} must be a positive number of seconds")
    return f"{float(value)}s"


def obstore_settings(storage_options: dict[str, Any]) -> ObstoreSettings:
    """Translates s3fs-style ``storage_options`` (without ``client``) into obstore's configuration.

    Raises:
        UnsupportedOption: An option (named, value left out) has no obstore equivalent.
    """
    config: dict[str, Any] = {}
    client: dict[str, Any] = {"connect_timeout": "10s", "read_timeout": "30s", "timeout": "600s"}
    endpoint: str | None = None
    for name, value in storage_options.items():
        if name in _FSSPEC_ONLY:
            continue
        if name in _CREDENTIAL_KEYS:
            if value is not None:
                config[_CREDENTIAL_KEYS[name]] = str(value)
        elif name == "anon":
            if value:
                config["skip_signature"] = True
        elif name == "endpoint_url":
            endpoint = value
        elif name == "region_name":
            config["region"] = str(value)
        elif name == "use_ssl":
            if value is False:
                client["allow_http"] = True
        elif name == "client_kwargs":
            for key, inner in dict(value or {}).items():
                if key not in _CLIENT_KWARGS:
                    raise UnsupportedOption(f"client_kwargs.{key}")
                if key == "endpoint_url":
                    endpoint = inner
                elif key == "region_name":
                    config["region"] = str(inner)
                elif inner is not None:
                    config[_CREDENTIAL_KEYS[key]] = str(inner)
        elif name == "config_kwargs":
            for key, inner in dict(value or {}).items():
                if key not in _CONFIG_KWARGS:
                    raise UnsupportedOption(f"config_kwargs.{key}")
                if key in ("connect_timeout", "read_timeout"):
                    client[key] = _seconds(inner, key)
                elif key == "region_name":
                    config["region"] = str(inner)
                elif key == "s3":
                    style = dict(inner or {}).get("addressing_style")
                    if style not in (None, "auto", "path", "virtual") or set(dict(inner or {})) - {"addressing_style"}:
                        raise UnsupportedOption("config_kwargs.s3 (only addressing_style is understood)")
                    if style == "virtual":
                        config["virtual_hosted_style_request"] = True
        elif name == "obstore":
            config.update(dict(value or {}))
        else:
            raise UnsupportedOption(name)
    if endpoint:
        config["endpoint"] = str(endpoint)
        if str(endpoint).startswith("http://"):
            client["allow_http"] = True
    return ObstoreSettings(config, client)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules (blocked) raises ValueError
        return False


def choose_client(protocol: str, storage_options: dict[str, Any]) -> tuple[str, str]:
    """``("obstore" | "fsspec", reason)`` for a URL of ``protocol`` with ``storage_options`` (``client`` included).

    Raises:
        ValueError: ``client`` is not one of :data:`CLIENTS`, or ``"obstore"`` was asked for and cannot serve.
        ImportError: ``client="obstore"`` and obstore is not installed (names the extra).
    """
    wanted = storage_options.get("client", "auto")
    if wanted not in CLIENTS:
        raise ValueError(f"storage_options['client'] must be one of {CLIENTS}, got {wanted!r}")
    if wanted == "fsspec":
        return "fsspec", "asked for (client='fsspec')"
    if protocol not in ("s3", "s3a"):
        if wanted == "obstore":
            raise ValueError(f"client='obstore' serves s3:// only (S3-compatible endpoints too), not {protocol}://")
        return "fsspec", f"{protocol}:// is served by fsspec"
    installed = _installed("obstore")
    if not installed:
        if wanted == "obstore":
            raise ImportError("client='obstore' needs the 'obstore' package: pip install 'dataio[s3]'")
        return "fsspec", "obstore is not installed (pip install 'dataio[s3]')"
    options = {k: v for k, v in storage_options.items() if k != "client"}
    try:
        obstore_settings(options)
    except UnsupportedOption as exc:
        if wanted == "obstore":
            raise ValueError(f"client='obstore' cannot express the storage option {exc}; use client='fsspec'") from None
        return "fsspec", f"obstore cannot express the storage option {exc}"
    has_key = any(k in options for k in ("key", "aws_access_key_id", "anon")) or "aws_access_key_id" in dict(
        options.get("client_kwargs") or {}
    )
    if wanted == "auto" and not has_key and os.environ.get("AWS_PROFILE") and not os.environ.get("AWS_ACCESS_KEY_ID"):
        return "fsspec", "AWS_PROFILE names a profile, which only s3fs (botocore) reads"
    return "obstore", "asked for (client='obstore')" if wanted == "obstore" else "obstore is installed"
