"""The files a page loads, all from this machine: the dashboard's own HTML/JS/CSS from
this package, and plotly.js from the installed ``plotly`` package (the ``ui`` extra).

Nothing comes from a CDN: an air-gapped cluster must show its charts. plotly is
looked up with ``find_spec`` (its Python side is never imported, it only carries
the file). Each file is read, hashed and gzipped once, on its first request.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

STATIC_DIR = Path(__file__).with_name("static")
PLOTLY_JS = "plotly.min.js"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    content_type: str
    etag: str


def plotly_js() -> Path:
    """plotly.min.js inside the installed plotly package, or a UsageError saying how to get it."""
    spec = importlib.util.find_spec("plotly")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "package_data" / PLOTLY_JS
        if path.is_file():
            return path
    raise UsageError("localtrack ui draws its charts with plotly.js, which the 'ui' extra installs "
                     "(the plotly package ships the file; nothing is downloaded at run time): "
                     "pip install 'localtrack[ui]'.")


class Assets:
    """Static files by name; unknown names are None (never a path outside the two sources)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, Asset] = {}
        self._plotly = plotly_js()

    def _path(self, name: str) -> Path | None:
        if name == PLOTLY_JS:
            return self._plotly
        if not _NAME_RE.fullmatch(name) or ".." in name:
            return None
        path = STATIC_DIR / name
        return path if path.suffix in _TYPES and path.is_file() else None

    def get(self, name: str) -> Asset | None:
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None:
            return cached
        path = self._path(name)
        if path is None:
            return None
        body = path.read_bytes()
        asset = Asset(body=body, gzipped=gzip.compress(body, compresslevel=6, mtime=0),
                      content_type=_TYPES[path.suffix],
                      etag='"' + hashlib.sha256(body).hexdigest()[:20] + '"')
        with self._lock:
            self._cache[name] = asset
        return asset
