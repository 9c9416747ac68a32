"""The sync seam: a remote is four primitives over keys below its root.

Keys are POSIX paths relative to the remote's root, laid out like a local store
(docs/format.md, "Remote stores"). ``put`` is atomic: a reader sees the old
object or the new one, never part of one; that is what lets sync order its
uploads so that no reader meets a manifest naming a segment not yet there.
Implementations map their foreign errors to RemoteError at this boundary;
FileNotFoundError passes through, because it means "not there" to callers.
``url`` never holds a credential: it is the only form shown, logged or stored.
"""

from __future__ import annotations

import abc
import errno
import io
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Generic, NamedTuple, TypeVar

from .. import _digests
from ..errors import CorruptRunError, RemoteError

Opener = Callable[[], BinaryIO]  # opens the local file to upload (e.g. following no link)


def check_key(key: str, url: str) -> str:
    """``key`` when it is a relative path of plain names; it then cannot leave the remote's root.

    Keys are built from validated names (_naming), so this only fires on a bug or on a
    damaged sync state: refusing is the last line before a write lands outside the remote.
    """
    parts = key.split("/")
    if key and (key.startswith("/") or "\0" in key or any(p in ("", ".", "..") for p in parts)):
        raise RemoteError(f"Refusing the key {key!r} on {url!r}: a key is a relative path of plain "
                          "names, and this one would leave the remote. Nothing was written; the "
                          "local run's sync state is probably damaged (delete its sync/ folder).",
                          url=url, path=key)
    return key


class Entry(NamedTuple):
    is_dir: bool
    size: int
    mtime: float


class Remote(abc.ABC):
    """A place runs are copied to and read from."""

    url: str

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError when it does not exist."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Create or replace the object atomically (parents are implied)."""

    def put_file(self, key: str, path: Path, chunk: int, digest: str | None = None,
                 opener: Opener | None = None) -> int:
        """Create or replace the object with a local file's bytes, atomically, and return how many
        went up; with ``digest`` (``"blake3:<hex>"``, ``"sha256:<hex>"``), only if the bytes
        hash to it; ``opener`` opens the file (see FileChunks). The in-tree remotes stream it
        ``chunk`` bytes at a time (a checkpoint of many GiB is never held in memory); this
        default, for a remote that cannot, reads it whole."""
        chunks = FileChunks(path, chunk, digest, opener)
        data = b"".join(bytes(piece) for piece in chunks)
        self.put(key, data)
        return chunks.size

    @abc.abstractmethod
    def list(self, key: str) -> dict[str, Entry]:
        """The children of a directory (``{}`` when there is none); temporaries are left out."""

    def walk(self, key: str) -> dict[str, Entry]:
        """Every object below ``key`` by its path relative to it (folders are not entries;
        ``{}`` when there is none); temporaries are left out. This default lists folder by
        folder; an object store lists the prefix at once."""
        out: dict[str, Entry] = {}
        for name, entry in self.list(key).items():
            if entry.is_dir:
                below = self.walk(f"{key}/{name}" if key else name)
                out.update((f"{name}/{rel}", e) for rel, e in below.items())
            else:
                out[name] = entry
        return out

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object or a whole directory; a missing one is fine."""

    def info(self, key: str) -> Entry | None:
        parent, _, name = key.rpartition("/")
        return self.list(parent).get(name)

    def open_input(self, key: str) -> Any:
        """A random-access file for pyarrow (Parquet footers are read first)."""
        return io.BytesIO(self.get(key))

    def check(self) -> None:
        """Fail with one clear RemoteError when the remote cannot be used at all."""
        self.list("")

    def describe(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}" if key else self.url

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


T = TypeVar("T")


class PerRemote(Generic[T]):
    """One ``T`` per remote object, made on first use and dropped with the remote: what the
    read side keeps of a remote for an Api and its runs, or for the dashboard."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._made: weakref.WeakKeyDictionary[Remote, T] = weakref.WeakKeyDictionary()

    def __call__(self, remote: Remote) -> T:
        with self._lock:
            made = self._made.get(remote)
            if made is None:
                made = self._made[remote] = self._factory()
            return made


K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """Values by key, the least recently used dropped first once more than ``count`` are kept
    or their ``size_of`` passes ``size``; ``on_drop`` is called with each one dropped (a handle
    closed; not with one replaced by put, which a reader may still hold). Thread-safe: what
    the read side keeps of a remote is shared by the dashboard's request threads."""

    def __init__(self, *, count: int | None = None, size: int | None = None,
                 size_of: Callable[[V], int] = lambda _: 0,
                 on_drop: Callable[[V], None] = lambda _: None) -> None:
        self._count, self._size, self._size_of, self._on_drop = count, size, size_of, on_drop
        self._lock = threading.Lock()
        self._kept: OrderedDict[K, V] = OrderedDict()
        self._total = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._kept.get(key)
            if value is not None:
                self._kept.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._pop(key, replaced=True)
            self._kept[key] = value
            self._total += self._size_of(value)
            while self._kept and ((self._count is not None and len(self._kept) > self._count)
                                  or (self._size is not None and self._total > self._size)):
                self._pop(next(iter(self._kept)))

    def drop(self, chosen: Callable[[K], bool]) -> None:
        """Drop every key ``chosen`` says."""
        with self._lock:
            for key in [k for k in self._kept if chosen(k)]:
                self._pop(key)

    def _pop(self, key: K, replaced: bool = False) -> None:
        value = self._kept.pop(key, None)
        if value is not None:
            self._total -= self._size_of(value)
            if not replaced:
                self._on_drop(value)


class FileChunks:
    """A local file read for an upload, ``chunk`` bytes at a time (one buffer, reused: write
    each piece before asking for the next). Hashed as it goes: when the iteration ends, a
    file that changed size while read is an OSError, and one whose bytes do not hash to the
    ``digest`` expected (``"<algorithm>:<hex>"``) a CorruptRunError, raised before the caller
    completes its upload, so a damaged blob of a content-addressed store never reaches a
    remote under its name.
    ``opener`` opens the file (default: open(path)), e.g. following no link inside a store."""

    def __init__(self, path: Path, chunk: int, digest: str | None,
                 opener: Opener | None = None) -> None:
        self.path, self.chunk, self.size = path, chunk, 0
        self.want = _digests.parse(digest) if digest is not None else None
        if digest is not None and self.want is None:
            raise ValueError(f"not a content address: {digest!r}")
        self.opener = opener

    def __iter__(self) -> Iterator[memoryview]:
        h = _digests.hasher(self.want[0] if self.want else _digests.SHA256)
        buf = bytearray(self.chunk)
        view = memoryview(buf)
        fh: Any  # (BinaryIO's stub lacks readinto, which every binary file has)
        with self.opener() if self.opener is not None else open(self.path, "rb") as fh:
            expected = os.fstat(fh.fileno()).st_size
            while n := fh.readinto(buf):
                if self.want is not None:
                    h.update(view[:n])
                self.size += n
                yield view[:n]
        if self.size != expected:
            raise OSError(errno.EIO, f"{self.path} changed while it was read ({expected} bytes "
                          f"before, {self.size} read)")
        if self.want is not None and h.hexdigest() != self.want[1]:
            raise CorruptRunError(f"The stored file {str(self.path)!r} is damaged: its bytes' "
                                  f"{self.want[0]} is {h.hexdigest()[:16]}..., not its name; "
                                  "it was not uploaded. Restore it from a backup or a sync remote.",
                                  path=str(self.path))


class _Stat(NamedTuple):
    st_size: int
    st_mtime: float


class RemotePath:
    """The subset of pathlib.Path the read side uses, over a remote (read-only)."""

    __slots__ = ("key", "remote")

    def __init__(self, remote: Remote, key: str = "") -> None:
        self.remote = remote
        self.key = key.strip("/")

    def __truediv__(self, name: str) -> RemotePath:
        return RemotePath(self.remote, f"{self.key}/{name}" if self.key else name)

    @property
    def name(self) -> str:
        return self.key.rpartition("/")[2]

    @property
    def suffix(self) -> str:
        name = self.name
        dot = name.rfind(".")
        return name[dot:] if 0 < dot < len(name) - 1 else ""

    def read_bytes(self) -> bytes:
        return self.remote.get(self.key)

    def iterdir(self) -> Iterator[RemotePath]:
        for name in self.remote.list(self.key):
            yield self / name

    def entries(self) -> dict[str, Entry]:
        return self.remote.list(self.key)

    def walk(self) -> dict[str, Entry]:
        return self.remote.walk(self.key)

    def is_dir(self) -> bool:
        entry = self.remote.info(self.key) if self.key else Entry(True, 0, 0.0)
        return entry is not None and entry.is_dir

    def exists(self) -> bool:
        return not self.key or self.remote.info(self.key) is not None

    def stat(self) -> _Stat:
        entry = self.remote.info(self.key)
        if entry is None:
            raise FileNotFoundError(self.remote.describe(self.key))
        return _Stat(entry.size, entry.mtime)

    def open_input(self) -> Any:
        return self.remote.open_input(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and (self.remote, self.key) == (other.remote, other.key)

    def __hash__(self) -> int:
        return hash((id(self.remote), self.key))

    def __str__(self) -> str:
        return self.remote.describe(self.key)

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"
