"""No redirect off the endpoint's host: a signed S3 request (session token, access key id) goes to the endpoint only.

An endpoint answering ``301``/``302``/``303``/``307``/``308`` with a ``Location`` on another host would make an HTTP
client send the request again, ``x-amz-security-token`` included, to that host, and its answer (say a 404) would
pass for the endpoint's. dataio refuses such redirects in both S3 clients:

* s3fs (aiohttp): :func:`guarded_session_class` (aiobotocore's ``http_session_cls``) puts an aiohttp trace hook
  on its sessions that raises :class:`RedirectRefused` when a redirect names another host than the request it
  answers, before any byte is sent there. The error names the endpoint and the target.
* obstore (reqwest follows up to 10 redirects and obstore has no option to stop it): :func:`obstore_guard`
  routes every host but the endpoint's through a "proxy" at ``127.0.0.1:0``, where no server can listen: a
  redirect to another host fails to connect, locally, and is reported as :class:`RedirectRefused` naming the
  endpoint (reqwest does not say where the redirect pointed). Skipped when ``HTTP(S)_PROXY``/``ALL_PROXY`` is set
  (reqwest would otherwise ignore the user's proxy).

Redirects that stay on the endpoint's host (any port) are followed: same machine, same trust. A refused redirect
is permanent (never retried) and is a :class:`PermissionError`, never a "not found".
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urljoin, urlsplit

__all__ = ["GUARD_PROXY", "RedirectRefused", "guarded_session_class", "obstore_guard", "refused_redirect"]

#: The address no-one can serve: a connection to port 0 is refused by the kernel.
GUARD_PROXY = "http://127.0.0.1:0"
_PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_AWS_DOMAINS = "amazonaws.com,amazonaws.com.cn"


class RedirectRefused(PermissionError):
    """The endpoint redirected to another host; dataio sent nothing there. Permanent (``dataio_permanent``)."""

    dataio_permanent = True


def _refusal(endpoint: str, target: str) -> RedirectRefused:
    return RedirectRefused(
        f"the endpoint {endpoint} answered with a redirect to {target}: refused, nothing was sent there (the "
        "request carries credentials; dataio follows redirects on the endpoint's host only); set endpoint_url to "
        "the server that holds the data"
    )


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def obstore_guard(endpoint: str | None) -> dict[str, str]:
    """obstore client options that make a redirect off the endpoint's host fail locally (empty if the user has
    a proxy configured in the environment)."""
    if any(os.environ.get(name) for name in _PROXY_ENV):
        return {}
    host = _host(endpoint) if endpoint else ""
    return {"proxy_url": GUARD_PROXY, "proxy_excludes": host or _AWS_DOMAINS}


def refused_redirect(text: str, endpoint: str | None) -> RedirectRefused | None:
    """The refusal for an obstore error ``text`` that is a connection refused by :data:`GUARD_PROXY`, or None."""
    if "127.0.0.1:0," not in text and "127.0.0.1:0\n" not in text:
        return None
    return _refusal(endpoint or "of AWS S3", "another host (obstore does not report which)")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _trace_config() -> Any:
    import aiohttp

    async def on_redirect(session: Any, context: Any, params: Any) -> None:
        source = str(params.url)
        target = urljoin(source, params.response.headers.get("Location", ""))
        if _host(target) != _host(source):
            params.response.close()
            raise _refusal(_origin(source), f"{_origin(target)}{urlsplit(target).path}, another host")

    config = aiohttp.TraceConfig()
    config.on_request_redirect.append(on_redirect)
    config.freeze()
    return config


_session_class: type | None = None


def guarded_session_class() -> type | None:
    """The aiobotocore ``http_session_cls`` whose aiohttp sessions refuse redirects to another host (None when
    aiobotocore is not installed: opening the store then fails with fsspec's message naming the extra)."""
    global _session_class
    if _session_class is not None:
        return _session_class
    try:
        from aiobotocore.httpsession import AIOHTTPSession
    except ImportError:
        return None

    trace = _trace_config()

    class GuardedSession(AIOHTTPSession):  # type: ignore[misc]
        async def _get_session(self, proxy_url: Any) -> Any:
            session = await super()._get_session(proxy_url)
            if trace not in session._trace_configs:  # aiohttp reads this list on every request
                session._trace_configs.append(trace)
            return session

    _session_class = GuardedSession
    return GuardedSession
