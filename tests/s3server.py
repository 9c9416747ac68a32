"""A real S3-compatible server on loopback for the sync tests: moto's standalone server.

It runs in the test process (moto keeps its buckets in memory there), so the
server can be stopped and started again on the same port with its data intact:
that is how the outage test takes the remote down and brings it back.
Only 127.0.0.1 is ever contacted; the credentials are dummies moto accepts.
"""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

ACCESS_KEY = "AKIALOCALTRACKTEST01"
SECRET_KEY = "localtrack-test-secret-do-not-print"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = None
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path?query, Range) served

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        deadline = time.monotonic() + 10
        while True:
            try:
                server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
                server.start()
                break
            except OSError:  # the port is still in TIME_WAIT after a stop
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._server = server
        wsgi = server._server  # werkzeug's server, made before start() returns
        app = wsgi.app

        def counted(environ: dict, start_response: Any) -> Any:
            query = environ.get("QUERY_STRING")
            path = environ.get("PATH_INFO", "") + (f"?{unquote(query)}" if query else "")
            self.requests.append((environ["REQUEST_METHOD"], path, environ.get("HTTP_RANGE")))
            return app(environ, start_response)

        wsgi.app = counted  # every request served, counted (readers' costs; see test_media_remote)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def filesystem(self):
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region="us-east-1",
                                 endpoint_override=self.endpoint, allow_bucket_creation=True)

    def new_bucket(self) -> str:
        name = f"bkt-{secrets.token_hex(4)}"
        self.filesystem().create_dir(name)
        return name

    def uri(self, bucket: str, prefix: str = "team") -> str:
        return f"s3://{bucket}/{prefix}?endpoint_override=127.0.0.1:{self.port}&scheme=http"

    def env(self) -> dict[str, str]:
        """What a subprocess needs: credentials the standard AWS way, and no metadata lookups."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The running server, with its credentials in this process's environment."""
    if s3_server._server is None:
        s3_server.start()
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server


@pytest.fixture(params=["dir", "s3"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A synced copy: a directory, or a fresh bucket on the loopback S3 server (and the env a
    process needs to reach it)."""
    if request.param == "dir":
        return str(tmp_path / "remote"), {}
    server = request.getfixturevalue("s3")  # the module takes s3 (and s3_server) too
    return server.uri(server.new_bucket()), server.env()
