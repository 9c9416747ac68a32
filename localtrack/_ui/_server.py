"""The dashboard's HTTP server: the stdlib's ThreadingHTTPServer, read-only, loopback by default.

Why the stdlib: the server answers a handful of GET routes with JSON or a static
file, for one user behind an ssh tunnel; a framework would add a dependency
(and an install on air-gapped machines) for nothing this needs.

Safety, since the page has no login:
- it binds 127.0.0.1 unless ``allow_remote`` is given, and then warns;
- on loopback it answers only requests whose Host header names loopback, so a
  web page on another site cannot read the store through DNS rebinding;
- it only reads: GET and HEAD, no route writes a run (listing may refresh the derived
  runs index, ``<project>/index.json``, as every listing does: docs/format.md);
- every response forbids inline scripts and foreign origins (CSP), and the page
  inserts store data as text only, so a run named ``<script>`` stays text.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import socket
import socketserver
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from .. import _exitgate
from .._query import Api
from ..errors import LocaltrackError, RunNotFoundError, SweepNotFoundError, UsageError
from . import _media, _sweeps
from ._assets import Assets
from ._data import StoreView

logger = logging.getLogger("localtrack")

_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; media-src 'self'; font-src 'self'; connect-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'")
_SECURITY_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_GZIP_MIN = 1024
_TEXT_FILES = (".json", ".jsonl", ".broken", ".txt", ".log", ".yaml", ".yml")


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


class UIServer(ThreadingHTTPServer):
    """A bound dashboard server; ``serve_forever()`` serves, ``server_close()`` releases the port."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, view: StoreView, assets: Assets, host: str, port: int,
                 check_host: bool) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.view = view
        self.assets = assets
        self.check_host = check_host
        super().__init__((host.strip("[]"), port), _Handler)
        self.port: int = self.server_address[1]
        self.host = host
        shown = f"[{host.strip('[]')}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        self.allowed_hosts = {f"{h}:{self.port}" for h in ("127.0.0.1", "localhost", "[::1]", shown)}

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look up the host's FQDN, which hangs where DNS is absent.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def root(self) -> str:
        return self.view.root

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that drops a connection (a closed tab, a slider moved on) is routine: no
        traceback on stderr for it, as socketserver would print; anything else is logged."""
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            logger.debug("ui: %s dropped the connection", client_address, exc_info=True)
        else:
            logger.error("ui: a request from %s failed", client_address, exc_info=True)


def make_server(dir: str | os.PathLike[str] | None = None, host: str = "127.0.0.1", port: int = 8080,
                allow_remote: bool = False) -> UIServer:
    """Bind the dashboard (port 0: any free port). Refuses a non-loopback host without allow_remote."""
    loopback = is_loopback(host)
    if not loopback and not allow_remote:
        raise UsageError(
            f"Refusing to bind {host!r}: the dashboard has no login, so anyone who can reach that "
            "address could read every run. Reach it through an ssh tunnel instead "
            f"(ssh -L {port or 8080}:127.0.0.1:{port or 8080} <this host>), or pass --allow-remote "
            "to bind it anyway.")
    if not loopback:
        logger.warning("serving on %s, which is not loopback: anyone who can reach it can read "
                       "every run in the store (there is no login)", host)
    view = StoreView(Api(dir))
    if not view.api.root.is_dir():
        logger.warning("no store at %s yet; runs will appear as they are logged there", view.root)
    assets = Assets()
    try:
        server = UIServer(view, assets, host, port, check_host=loopback)
    except OSError as exc:
        raise UsageError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}); choose another "
                         "port with --port (0 picks a free one).") from exc
    _warm_up_arrow()
    threading.Thread(target=_warm_up_runs, args=(view,), name="localtrack-ui-warmup", daemon=True).start()
    return server


def _warm_up_arrow() -> None:
    """Pay pyarrow's one-time costs (its import; the import of pandas, which pyarrow does on
    its first conversion of a Python value when pandas is installed: ~0.5 s in all) before
    the URL is printed, rather than in a thread that would slow the first requests down."""
    import pyarrow as pa

    from ._downsample import series

    table = pa.Table.from_arrays([pa.array(range(10)), pa.array([float(i) for i in range(10)])],
                                 names=["_step", "v"])
    series(table, "v", points=1)


def _warm_up_runs(view: StoreView) -> None:
    """Read every run once, so the first runs list a browser asks for comes from the cache."""
    try:
        for project in view.api.projects():
            view.runs(project)
    except Exception:
        # Only an optimisation: a damaged run shows its error when a page asks for it.
        logger.debug("ui: warm-up failed", exc_info=True)


def _float(value: str | None) -> float | None:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"Expected a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise UsageError(f"Expected a finite number, got {value!r}.")
    return number


class _Handler(BaseHTTPRequestHandler):
    server: UIServer
    server_version = "localtrack-ui"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        logger.debug("ui: " + format, *args)

    # -- responses ---------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, *, gzipped: bytes | None = None,
              headers: dict[str, str] | None = None) -> None:
        accepts_gzip = "gzip" in self.headers.get("Accept-Encoding", "")
        if accepts_gzip and gzipped is None and len(body) >= _GZIP_MIN:
            import gzip

            gzipped = gzip.compress(body, compresslevel=1, mtime=0)
        use_gzip = accepts_gzip and gzipped is not None
        payload = gzipped if use_gzip and gzipped is not None else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if use_gzip:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Vary", "Accept-Encoding")
        for name, value in {**_SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _json(self, value: Any, status: int = 200) -> None:
        body = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str)
        self._send(status, body, "application/json", headers={"Cache-Control": "no-store"})

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json({"error": message}, status=status)

    # -- routing -----------------------------------------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802 - the stdlib's name
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.server.check_host and self.headers.get("Host", "") not in self.server.allowed_hosts:
            # DNS rebinding: a foreign page that made its name resolve to 127.0.0.1.
            self._error(HTTPStatus.FORBIDDEN, "This dashboard answers only to loopback host names.")
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            with _exitgate.arrow_work():  # its Arrow objects, compute too, end before the exit
                self._route(url.path, query)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except (RunNotFoundError, SweepNotFoundError) as exc:
            self._error(HTTPStatus.NOT_FOUND, str(exc))
        except UsageError as exc:  # InvalidNameError among them
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except LocaltrackError as exc:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc))
        except Exception:
            # The request boundary: one bad run must not take the dashboard down.
            logger.error("ui: %s failed", self.path, exc_info=True)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal error; see the server's log.")

    def _route(self, path: str, q: dict[str, str]) -> None:
        view = self.server.view
        if path in ("/", "/index.html"):
            self._static("index.html")
        elif path.startswith("/static/"):
            self._static(path.removeprefix("/static/"))
        elif path == "/favicon.ico":
            self._static("favicon.svg")
        elif path == "/api/projects":
            self._json({"root": str(view.root), "projects": view.projects()})
        elif path == "/api/runs":
            polled = view.poll(_required(q, "project"), q.get("since"))  # ?since=: what changed
            self._json({"root": str(view.root), "project": q.get("project"), **polled})
        elif path == "/api/run":
            self._json({"root": str(view.root), **view.run(_required(q, "path"))})
        elif path == "/api/status":
            self._json(view.status(p for p in _required(q, "paths").split(",") if p))
        elif path == "/api/history":
            keys = [k for k in q.get("keys", "").split(",") if k]
            points = int(_float(q.get("points")) or 1000)
            self._json(view.history(_required(q, "path"), keys, x=q.get("x", "step"), points=points,
                                    xmin=_float(q.get("xmin")), xmax=_float(q.get("xmax")),
                                    by_label=_by(q.get("by"))))
        elif path == "/api/sweeps":
            project = _required(q, "project")
            self._json({"root": str(view.root), "project": project,
                        "sweeps": _sweeps.sweeps(view.api, project)})
        elif path == "/api/sweep":
            self._json({"root": str(view.root), **_sweeps.sweep(view.api, _required(q, "path"))})
        elif path == "/api/media":
            self._json(_media.media_keys(view.media_run(_required(q, "path"), fresh=True)))
        elif path == "/api/media/item":
            self._media_item(q)
        elif path == "/api/histograms":
            self._json(_media.histograms(view.api.run(_required(q, "path")), _required(q, "key"),
                                         q.get("label") or None))
        elif path == "/api/file":
            self._file(_required(q, "path"), _required(q, "name"))
        else:
            self._error(HTTPStatus.NOT_FOUND, f"No such page: {path!r}.")

    def _not_modified(self, headers: dict[str, str]) -> bool:
        """Answer 304 when the browser holds the version ``headers["ETag"]`` names."""
        if self.headers.get("If-None-Match") != headers["ETag"]:
            return False
        self.send_response(HTTPStatus.NOT_MODIFIED)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def _static(self, name: str) -> None:
        asset = self.server.assets.get(name)
        if asset is None:
            self._error(HTTPStatus.NOT_FOUND, f"No such file: {name!r}.")
            return
        headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
        if not self._not_modified(headers):
            self._send(200, asset.body, asset.content_type, gzipped=asset.gzipped, headers=headers)

    def _media_item(self, q: dict[str, str]) -> None:
        """One media item. Its ETag is its step's version (see _media.version): a browser that
        holds it gets a 304 without a blob read, and a URL that carries the version (``v=``,
        as the page's do) may be kept for good, so moving a step slider back costs nothing."""
        run = self.server.view.media_run(_required(q, "path"))
        key = _required(q, "key")
        label = q.get("label") or None  # a shared run's writer
        row = _media.stored(run, key, q.get("step"), label)
        index, cell = _media.address(q)
        piece = _media.part(q)
        tag = _media.version(row.value)
        cache = "private, max-age=31536000, immutable" if q.get("v") == tag else "no-cache"
        headers = {"ETag": _media.etag(tag, index, cell, piece), "Cache-Control": cache}
        if not self._not_modified(headers):
            body, ctype = _media.media_item(run, key, row, index, cell, piece)
            self._send(200, body, ctype, headers=headers)

    def _file(self, run_path: str, name: str) -> None:
        target = self.server.view.file(run_path, name)
        body = target.read_bytes()
        if target.name.endswith(_TEXT_FILES):
            ctype, disposition = "text/plain; charset=utf-8", "inline"
        else:
            ctype, disposition = "application/octet-stream", "attachment"
        filename = json.dumps(target.name)  # quoted and escaped for the header
        self._send(200, body, ctype, headers={"Content-Disposition": f"{disposition}; filename={filename}",
                                              "Cache-Control": "no-store"})


def _by(value: str | None) -> bool:
    """``by=label``: a shared run's history per writer label too (StoreView.history)."""
    if value not in (None, "label"):
        raise UsageError(f"Invalid by={value!r}: the one grouping is by=label (a shared run's "
                         "writers).")
    return value == "label"


def _required(q: dict[str, str], name: str) -> str:
    value = q.get(name)
    if not value:
        raise UsageError(f"Missing query parameter {name!r}.")
    return value
