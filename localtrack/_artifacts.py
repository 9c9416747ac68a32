"""Artifacts: versioned sets of files (checkpoints, datasets) in a project's content-addressed store.

    <root>/<project>/artifacts/blobs/blake3/<sh>/<blake3>       one file's bytes, stored once
                               blobs/<sh>/<sha256>              (format-1 versions' blobs)
                               names/<name>/v<N>.json           a version's manifest (immutable)
                               names/<name>/aliases/<alias>.json   {"version": N} (atomically replaced)
                               names/<name>/used/<N>/<project>@<run id>.json   who used version N
                               names/<name>/lock                the name's lock (versions, aliases)

Logging writes every blob first (each fsynced under a temp name, then renamed to its hash),
the manifest last, created exclusively under the name's lock: a crash leaves no version, or
a whole one, and at worst blobs no manifest names, which ``localtrack doctor --fix`` removes
once they are older than GRACE_SECONDS (a live writer touches each blob it reuses, so a
blob it is about to name is never that old). See docs/format.md ("Artifacts").

Reading works on a local store and on a synced copy (a directory, or ``s3://`` through
_remotes), which has the same layout: a node without the artifact in its own store reads it
from there (``Api(dir=remote)``, or use_artifact through LOCALTRACK_ARTIFACT_REMOTE).
A download checks every file against its manifest's hash before any lands in place.
Format 2 names blobs by BLAKE3 (``_digests``); format-1 versions, whose blobs are named by
SHA-256, are read, downloaded, synced and kept by gc as before.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, NamedTuple, TypeVar

from . import _commits, _digests, _fsutil, _locks, _naming, _settings
from ._codec import decode_tree, dumps, encode_tree, loads
from ._remotes import RemotePath, open_store, redact
from .errors import (
    ArtifactError,
    ArtifactNotFoundError,
    CorruptRunError,
    InvalidNameError,
    InvalidValueError,
    LocaltrackError,
    UsageError,
)

if TYPE_CHECKING:
    from io import BufferedReader, BufferedWriter
    from tempfile import TemporaryDirectory

    from ._query import ApiRun

ARTIFACT_FORMAT = 2
# The hash each format names a version's blobs by, also the key of its file entries.
_ALGORITHM = {1: _digests.SHA256, 2: _digests.BLAKE3}
GRACE_SECONDS = 24 * 3600.0  # an unnamed blob younger than this may belong to a live writer
_LOCK_SECONDS = 120.0
_CHUNK = 8 << 20

Where = Path | RemotePath  # a store read: local, or a synced copy
W = TypeVar("W", Path, RemotePath, Where)


def artifacts_dir(root: W, project: str) -> W:
    return root / project / "artifacts"


def blob_path(algorithm: str, hexdigest: str) -> str:
    """A blob's path under ``artifacts/``: format 1's SHA-256 blobs where they always were,
    BLAKE3's in a folder of their own (a blob's path says which hash to check it against)."""
    if algorithm == _digests.SHA256:
        return f"blobs/{hexdigest[:2]}/{hexdigest}"
    return f"blobs/{algorithm}/{hexdigest[:2]}/{hexdigest}"


def _blob(adir: W, algorithm: str, hexdigest: str) -> W:
    return adir / blob_path(algorithm, hexdigest)


def address(info: dict[str, Any]) -> tuple[str, str]:
    """(algorithm, hex) naming a checked manifest's file entry: its ``blake3`` or ``sha256``."""
    algorithm = _digests.BLAKE3 if _digests.BLAKE3 in info else _digests.SHA256
    return algorithm, str(info[algorithm])


def _name_dir(adir: W, name: str) -> W:
    return adir / "names" / name


def _listing(folder: Where) -> list[str]:
    """The names in a folder ([] when there is none): one request on a remote."""
    if isinstance(folder, RemotePath):
        return list(folder.entries())
    return [p.name for p in folder.iterdir()] if folder.is_dir() else []


class ArtifactFile(NamedTuple):
    """One entry of an artifact: a stored file (``size``, ``digest``) or a reference (``uri``).

    ``digest`` is the content address of a stored file, ``"blake3:<hex>"`` (versions logged
    since artifact format 2) or ``"sha256:<hex>"`` (format 1); ``sha256`` is the hex of the
    latter, kept for format-1 versions and None for the others. Not W&B's
    ArtifactManifestEntry.digest, which is a base64 MD5."""

    path: str
    size: int | None = None
    sha256: str | None = None
    uri: str | None = None
    digest: str | None = None


def _check_policy(policy: object, artifact: str) -> None:
    if policy not in ("mutable", "immutable"):
        raise InvalidValueError(f"Cannot add to artifact {artifact!r} with policy={policy!r}: "
                                "give 'mutable' or 'immutable' (W&B's; both read the file when "
                                "the artifact is logged).")


def _entry_path(value: object, artifact: str) -> str:
    """A path inside an artifact: relative, '/'-separated, no '..', so it stays under any root."""
    text = value if isinstance(value, str) else ""
    parts = PurePosixPath(text).parts
    if (not parts or text.startswith("/") or "\\" in text or "\0" in text
            or any(p in (".", "..") for p in text.split("/"))):
        raise InvalidNameError(f"Invalid file name {value!r} in artifact {artifact!r}: use a "
                               "relative path with '/' and no '..', like 'model/weights.pt'.")
    return "/".join(parts)


class Artifact:
    """A set of files logged as one versioned unit: ``run.log_artifact(Artifact("model",
    "model").add_file("ckpt.pt"))``; ``run.use_artifact("model:latest").download()``."""

    def __init__(self, name: str, type: str, description: str | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        self.name = _naming.artifact_name(name)
        if not isinstance(type, str) or not type:
            raise UsageError(f"The type of artifact {name!r} must be a non-empty string, "
                             f"got {type!r}; e.g. 'model' or 'dataset'.")
        self.type = type
        self.description = description
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.project: str | None = None
        self._version: int | None = None
        self._aliases: list[str] = []
        self._root: Where | None = None  # the store it was read from
        self._adir: Where | None = None
        self._manifest: dict[str, Any] = {}
        self._sources: dict[str, Path] = {}  # a draft's files, read when it is logged
        self._refs: dict[str, str] = {}
        self._staging: TemporaryDirectory[str] | None = None
        self._commit: _commits.Commit | None = None  # its log_artifact's, once logged

    # -- building a draft ---------------------------------------------------------------------

    def add_file(self, local_path: str | os.PathLike[str], name: str | None = None, *,
                 policy: str = "mutable") -> Artifact:
        """Add one file (read when the artifact is logged; not copied now). ``policy`` is W&B's
        ("mutable" or "immutable"; Lightning's WandbLogger passes it): either, the file is
        read when the artifact is logged."""
        self._require_draft("add a file to")
        _check_policy(policy, self.name)
        path = Path(local_path)
        if not self._probe(path, path.is_file):
            raise ArtifactError(f"Cannot add {str(path)!r} to artifact {self.name!r}: it is not "
                                "a file (missing, or a directory: use add_dir).")
        self._put(_entry_path(name if name is not None else path.name, self.name), path)
        return self

    def add_dir(self, local_path: str | os.PathLike[str], name: str | None = None, *,
                policy: str = "mutable") -> Artifact:
        """Add every file under a directory (symbolic links followed; a loop is refused);
        ``policy`` as add_file's."""
        self._require_draft("add a directory to")
        _check_policy(policy, self.name)
        top = Path(local_path)
        if not self._probe(top, top.is_dir):
            raise ArtifactError(f"Cannot add {str(top)!r} to artifact {self.name!r}: it is not "
                                "a directory.")
        prefix = _entry_path(name, self.name) + "/" if name else ""
        found: dict[str, Path] = {}
        with self._reading(top):
            for rel, path in _walk(top, self.name):
                found[_entry_path(prefix + rel, self.name)] = path
        for entry, path in found.items():
            self._put(entry, path)
        return self

    def add_reference(self, uri: str, name: str | None = None) -> Artifact:
        """Record a URI (``s3://``, ``file://``, ``https://``) without copying what it names."""
        self._require_draft("add a reference to")
        if not isinstance(uri, str) or "://" not in uri:
            raise UsageError(f"Cannot add reference {uri!r} to artifact {self.name!r}: give a "
                             "URI like 's3://bucket/key' or 'file:///data/x'.")
        entry = _entry_path(name if name is not None else uri.rstrip("/").rsplit("/", 1)[-1],
                            self.name)
        self._check_free(entry)
        self._refs[entry] = uri
        return self

    @contextlib.contextmanager
    def new_file(self, name: str, mode: str = "w", encoding: str | None = None) -> Iterator[IO[Any]]:
        """Write a file straight into the draft: ``with art.new_file("cfg.json") as f: ...``."""
        self._require_draft("add a file to")
        entry = _entry_path(name, self.name)
        self._check_free(entry)
        if self._staging is None:
            import tempfile

            self._staging = tempfile.TemporaryDirectory(prefix="localtrack-artifact-")
        path = Path(self._staging.name) / secrets.token_hex(8)
        with open(path, mode, encoding=encoding) as fh:
            yield fh
        self._put(entry, path)

    def _probe(self, path: Path, test: Callable[[], bool]) -> bool:
        with self._reading(path):
            return test()

    @contextlib.contextmanager
    def _reading(self, path: Path) -> Iterator[None]:
        """An OSError while looking at the user's files, told as this artifact's."""
        try:
            yield
        except OSError as exc:
            raise ArtifactError(f"Cannot add {str(path)!r} to artifact {self.name!r}: "
                                f"{exc.strerror or exc} ({exc.filename}).") from exc

    def _put(self, entry: str, path: Path) -> None:
        self._check_free(entry)
        self._sources[entry] = path

    def _check_free(self, entry: str) -> None:
        if entry in self._sources or entry in self._refs:
            raise ArtifactError(f"Artifact {self.name!r} already has a file named {entry!r}; "
                                "pass name= to add it under another.")

    def _require_draft(self, what: str) -> None:
        if self._commit is not None:
            self._commit.done.wait()  # logged or not, once its commit is over
        if self._version is not None:
            raise ArtifactError(f"Cannot {what} artifact {self.qualified_name!r}: a logged "
                                "version never changes. Make a new Artifact and log it.")

    # -- a logged version ---------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> Artifact:
        """W&B's: wait until the log_artifact() of this artifact is stored (its version,
        files and aliases written) and return it. Raises the commit's error, e.g. a full disk
        (a LocaltrackError naming the artifact and the run), or ArtifactError once ``timeout``
        seconds pass. Returns at once for an artifact read from a store, or never logged."""
        self._settle(timeout)
        return self

    def _settle(self, timeout: float | None = None) -> None:
        """Wait for a pending commit (the version, files and aliases are known after it)."""
        if self._commit is not None:
            self._commit.wait(timeout)

    @property
    def version(self) -> str | None:
        """``"v3"`` once logged (None for a draft); waits for a log_artifact() under way."""
        self._settle()
        return None if self._version is None else f"v{self._version}"

    @property
    def aliases(self) -> list[str]:
        self._settle()
        return list(self._aliases)

    @property
    def qualified_name(self) -> str:
        return f"{self.project}/{self.name}:{self.version}" if self.project else self.name

    @property
    def digest(self) -> str | None:
        self._settle()
        return self._manifest.get("digest")

    @property
    def size(self) -> int:
        """Bytes of the stored files (references not counted)."""
        return sum(f.size or 0 for f in self.files())

    def files(self) -> list[ArtifactFile]:
        """The entries, sorted by path."""
        self._settle()
        if self._version is None:
            out = [ArtifactFile(e) for e in self._sources] + \
                  [ArtifactFile(e, uri=u) for e, u in self._refs.items()]
            return sorted(out, key=lambda f: f.path)
        out = []
        for entry, info in self._manifest["files"].items():
            algorithm, hexdigest = address(info)
            out.append(ArtifactFile(entry, size=info["size"], digest=f"{algorithm}:{hexdigest}",
                                    sha256=hexdigest if algorithm == _digests.SHA256 else None))
        out += [ArtifactFile(e, uri=u) for e, u in self._manifest["references"].items()]
        return sorted(out, key=lambda f: f.path)

    def download(self, root: str | os.PathLike[str] | None = None) -> str:
        """Copy the version's files under ``root`` (default ``./artifacts/<name>:v<N>``) and
        return it. Copies, not hard links: a script that rewrote a downloaded checkpoint in
        place would otherwise change every version holding it. References are not fetched."""
        adir = self._require_logged("download")
        dest = Path(root) if root is not None else Path("artifacts") / f"{self.name}:{self.version}"
        todo = []
        for entry, info in sorted(self._manifest["files"].items()):
            target = dest.joinpath(*entry.split("/"))
            with _fsutil.storage_errors(f"download artifact {self.qualified_name!r} into", target):
                algorithm, hexdigest = address(info)
                if target.is_file() and target.stat().st_size == info["size"] \
                        and _hash_file(target, algorithm) == hexdigest:
                    continue  # already there (a second download)
            todo.append((entry, info, target))
        _download(adir, todo, self.qualified_name)
        return str(dest)

    def logged_by(self) -> ApiRun | None:
        """The run that logged this version (None if it was logged outside a run or is gone)."""
        from ._query import ApiRun

        self._require_logged("read the lineage of")
        who = self._manifest.get("logged_by")
        if not who or self._root is None:
            return None
        project, rid = _naming.parse_path(who)
        try:
            return ApiRun(self._root, project, rid)
        except LocaltrackError:
            return None

    def used_by(self) -> list[ApiRun]:
        """The runs that called use_artifact() on this version, oldest use first."""
        from ._query import ApiRun

        adir = self._require_logged("read the lineage of")
        folder = _name_dir(adir, self.name) / "used" / str(self._version)
        uses = []
        for name in sorted(_listing(folder)):
            project, at, rid = name.removesuffix(".json").partition("@")
            if not at or not name.endswith(".json") or self._root is None:
                continue
            with contextlib.suppress(LocaltrackError, OSError):
                uses.append(((folder / name).stat().st_mtime,
                             ApiRun(self._root, _naming.project_name(project),
                                    _naming.run_id(rid))))
        return [run for _, run in sorted(uses, key=lambda u: u[0])]

    def _require_logged(self, what: str) -> Where:
        self._settle()
        if self._adir is None:
            raise ArtifactError(f"Cannot {what} artifact {self.name!r}: it has not been logged "
                                "(run.log_artifact) or fetched (run.use_artifact, Api().artifact).")
        return self._adir

    def __repr__(self) -> str:
        commit = self._commit  # (never waited for here)
        if commit is not None and not commit.done.is_set():
            return f"<localtrack.Artifact {self.name} ({self.type}), being stored>"
        if commit is not None and commit.error is not None:
            return f"<localtrack.Artifact {self.name} ({self.type}), not stored>"
        return f"<localtrack.Artifact {self.qualified_name} ({self.type})>"


def _walk(top: Path, artifact: str) -> Iterator[tuple[str, Path]]:
    """Files under ``top`` as (relative '/' path, path), following links; a loop is an error."""
    stack: list[tuple[Path, str, frozenset[tuple[int, int]]]] = [(top, "", frozenset())]
    while stack:
        folder, rel, seen = stack.pop()
        st = folder.stat()
        key = (st.st_dev, st.st_ino)
        if key in seen:
            raise ArtifactError(f"Cannot add {str(top)!r} to artifact {artifact!r}: "
                                f"{str(folder)!r} is a symbolic link loop (it leads back to a "
                                "folder above it). Remove the link or add the files one by one.")
        seen = seen | {key}
        for entry in sorted(folder.iterdir()):
            sub = f"{rel}{entry.name}"
            if entry.is_dir():
                stack.append((entry, sub + "/", seen))
            elif entry.is_file():
                yield sub, entry


def _download(adir: Where, todo: list[tuple[str, dict[str, Any], Path]], artifact: str) -> None:
    """Copy each blob to a temp name beside its target, hashing it, and check it against the
    manifest; rename them into place only once every one is whole. A blob missing or damaged
    (a synced copy is input like any other) leaves nothing under the root: no half file, no
    mix of two versions; the folders this call made are removed again."""
    staged: list[tuple[Path, Path]] = []
    made: list[Path] = []
    try:
        for entry, info, target in todo:
            what = f"file {entry!r} of artifact {artifact!r}"
            tmp = target.with_name(f"{_fsutil.TMP_PREFIX}{target.name}.{secrets.token_hex(4)}")
            with _fsutil.storage_errors(f"download {what} into", target):
                made += _make_dirs(target.parent)
                staged.append((tmp, target))
                _fetch(_blob(adir, *address(info)), tmp, info, what)
        for tmp, target in staged:
            with _fsutil.storage_errors(f"download artifact {artifact!r} into", target):
                # Not made durable: a download is a copy; one cut short by a crash is redone
                # (a file whose size or hash is not the manifest's is fetched again).
                tmp.replace(target)
    except BaseException:
        for tmp, _ in staged:
            _fsutil.unlink(tmp)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _make_dirs(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it created (top first)."""
    missing = []
    while not folder.is_dir() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    missing.reverse()
    for path in missing:
        path.mkdir(exist_ok=True)
    return missing


def _fetch(blob: Where, tmp: Path, info: dict[str, Any], what: str) -> None:
    """Copy ``blob`` to ``tmp`` (created new), refusing bytes that are not the manifest's."""
    try:
        src = blob.open_input() if isinstance(blob, RemotePath) else open(blob, "rb")
    except FileNotFoundError:
        raise CorruptRunError(f"The stored copy {str(blob)!r} of {what} is missing; nothing was "
                              "downloaded. Sync the store that logged it again, or restore its "
                              "artifacts/blobs from a backup.", path=str(blob)) from None
    except OSError as exc:
        raise _fsutil.storage_error(f"read the stored copy of {what} at", str(blob), exc) from exc
    algorithm, want = address(info)
    h = _digests.hasher(algorithm)
    size = 0
    with src, open(tmp, "xb") as dst:
        while chunk := src.read(_CHUNK):
            h.update(chunk)
            dst.write(chunk)
            size += len(chunk)
    got = h.hexdigest()
    if (got, size) != (want, info["size"]):
        raise CorruptRunError(f"The stored copy {str(blob)!r} of {what} is damaged: it holds "
                              f"{size} bytes whose {algorithm} is {got[:16]}..., the version's "
                              f"manifest says {info['size']} bytes of {algorithm} {want[:16]}...; "
                              "nothing was downloaded. Sync the store that logged it again, or "
                              "restore the blob from a backup.", path=str(blob))


def _hash_file(path: Path, algorithm: str) -> str:
    h = _digests.hasher(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# -- writing ------------------------------------------------------------------------------------
#
# log() copies each file into the store before it returns; the commit thread (_commits) then
# hashes the copies, names them and writes the manifest. The order of writes, and what a crash
# leaves at each point:
#   1. each file copied to blobs/.tmp-<random> (not synced)   -> temp files only (gc collects)
#   2. each copy hashed, fsynced, renamed to its hash          -> blobs no manifest names (gc)
#   3. the manifest created exclusively under the name's lock  -> the whole version
#   4. the aliases replaced atomically                         -> the version, aliases older


class _Copy(NamedTuple):
    """A file of a version being logged: its copy in the store (``tmp``, to hash and name), or
    an existing blob that holds the same bytes (``hexdigest``)."""

    size: int
    tmp: Path | None = None
    hexdigest: str | None = None


def _stage(adir: Path, src: Path, entry: str, artifact: str, hint: dict[str, Any] | None) -> _Copy:
    """Take ``src``'s bytes into the store now (the caller may rewrite it once log returns).

    A file the newest version held at the same path and size (``hint``, when that version
    names blobs by the same hash: not a format-1 one) is likely unchanged (the other shards of
    a checkpoint): it is hashed first and copied only if its blob is missing. Any other file is
    copied by the kernel (copy_file_range, as cp does) to a temp blob, which the commit hashes:
    a blob's name is always the hash of its bytes. A source that changed while it was copied
    (size or mtime) is refused.
    """
    try:
        fin = open(src, "rb")
    except FileNotFoundError:
        raise ArtifactError(f"Cannot log artifact {artifact!r}: its file {entry!r} "
                            f"({str(src)!r}) disappeared after it was added; nothing was "
                            "logged. Add it again or remove it.") from None
    algorithm = _ALGORITHM[ARTIFACT_FORMAT]
    with fin:
        before = os.fstat(fin.fileno())
        if hint is not None and algorithm in hint and hint.get("size") == before.st_size:
            hexdigest, size = _hash_stream(fin, algorithm)
            dst = _blob(adir, algorithm, hexdigest)
            if dst.exists() and size == before.st_size:
                os.utime(dst)  # young again: doctor's collection leaves it to this writer
                return _Copy(size, hexdigest=hexdigest)
        tmp = adir / "blobs" / f"{_fsutil.TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            with open(tmp, "xb") as fout:
                size = _copy(fin, fout)
            if not _unchanged(before, os.fstat(fin.fileno())):
                raise ArtifactError(f"Cannot log artifact {artifact!r}: its file {entry!r} "
                                    f"({str(src)!r}) changed while it was read; nothing was "
                                    "logged. Log it once the file is complete.")
        except BaseException:
            _fsutil.unlink(tmp)
            raise
    return _Copy(size, tmp=tmp)


def _unchanged(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)


def _hash_stream(fh: BufferedReader, algorithm: str) -> tuple[str, int]:
    h = _digests.hasher(algorithm)
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    size = 0
    while n := fh.readinto(buf):
        h.update(view[:n])
        size += n
    return h.hexdigest(), size


_SLICE = 64 << 20


def _copy(fin: BufferedReader, fout: BufferedWriter) -> int:
    """Copy all of ``fin`` into the empty ``fout``: by the kernel (copy_file_range, as cp does:
    no bytes through this process), or a plain read/write loop where the kernel or the file
    systems cannot. Nothing is hashed here: the copy is hashed by the commit (the bytes stored
    are the bytes named), so the caller waits for the copy only."""
    src, dst = fin.fileno(), fout.fileno()
    offset = 0
    try:
        while n := os.copy_file_range(src, dst, _SLICE, offset, offset):
            offset += n
    except OSError as exc:
        if offset or exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                       errno.EOPNOTSUPP, errno.EBADF):
            raise
    if offset:
        return offset
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    fin.seek(0)
    while n := fin.readinto(buf):
        fout.write(view[:n])
        offset += n
    return offset


def _name_copy(adir: Path, copy: _Copy, algorithm: str) -> str:
    """Hash a temp copy and make it the blob of that hash, durably (an existing blob is only
    touched, the copy removed unsynced); the commit thread's part of storing a file. The disk
    writes each slice while the hash goes on, so the fsync at the end has little left to do."""
    assert copy.tmp is not None
    h = _digests.hasher(algorithm)
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    try:
        with open(copy.tmp, "rb") as fh:
            fd, offset = fh.fileno(), 0
            while offset < copy.size:
                if offset % _SLICE == 0:
                    _fsutil.start_writeback(fd, offset, _SLICE)
                n = os.preadv(fd, [view[:min(_CHUNK, copy.size - offset)]], offset)
                if not n:
                    raise OSError(errno.EIO, "the copy is shorter than what was copied into it")
                h.update(view[:n])
                offset += n
            hexdigest = h.hexdigest()
            dst = _blob(adir, algorithm, hexdigest)
            if dst.exists():
                os.utime(dst)
                return hexdigest
            _fsutil.fsync(fd)
        os.chmod(copy.tmp, 0o444)
        _fsutil.ensure_dir(dst.parent)
        # If we die here: the blob is whole under its temp name (gc collects it once old).
        _fsutil.rename_durable(copy.tmp, dst)
        return hexdigest
    finally:
        _fsutil.unlink(copy.tmp)


def _head(artifact: Artifact, logged_by: str | None) -> dict[str, Any]:
    """A new version's manifest but its files: taken when log_artifact is called (a change to
    the Artifact object afterwards is not the logged version's)."""
    return {"format": ARTIFACT_FORMAT, "name": artifact.name, "type": artifact.type,
            "version": 0, "description": artifact.description,
            "metadata": _metadata(artifact), "created": time.time(), "logged_by": logged_by}


def _manifest_of(head: dict[str, Any], files: dict[str, dict[str, Any]],
                 refs: dict[str, str]) -> dict[str, Any]:
    """A new version's manifest: format ARTIFACT_FORMAT, its files' blobs named by that
    format's hash, and the digest by the same hash."""
    return {**head, "files": files, "references": refs,
            "digest": _digest(files, refs, _ALGORITHM[ARTIFACT_FORMAT])}


def _metadata(artifact: Artifact) -> Any:
    return encode_tree(artifact.metadata, f"the metadata of artifact {artifact.name!r}")


def _digest(files: dict[str, dict[str, Any]], refs: dict[str, str], algorithm: str) -> str:
    """A version's digest: ``algorithm`` (its files' hash) of its sorted listing. Two versions
    of different formats never have one digest, even when they hold the same files."""
    listing = "\n".join([f"{e}\0{files[e][algorithm]}" for e in sorted(files)]
                        + [f"{e}\0ref\0{refs[e]}" for e in sorted(refs)])
    h = _digests.hasher(algorithm)
    h.update(listing.encode())
    return h.hexdigest()


def log(artifact: Artifact, root: Path, project: str, aliases: list[str] | None,
        logged_by: str | None) -> Artifact:
    """Store a draft as the name's next version: its files are copied into the store before
    this returns; the commit thread names them, then writes the manifest, then the aliases.
    Returns the artifact at once; its version is known once committed (``wait()``, or any
    read of the version, waits for it)."""
    if not isinstance(artifact, Artifact):
        raise UsageError(f"log_artifact() takes a localtrack.Artifact or a path, got "
                         f"{type(artifact).__name__}.")
    artifact._require_draft("log")
    if isinstance(aliases, str):
        aliases = [aliases]  # W&B takes one alias as a string too
    head = _head(artifact, logged_by)  # a value that cannot be stored fails before any copy
    refs = dict(sorted(artifact._refs.items()))
    wanted = [a for a in (_naming.alias_name(a) for a in aliases or []) if a != "latest"]
    adir = artifacts_dir(root, project)
    ndir = _name_dir(adir, artifact.name)
    what = f"log artifact {artifact.name!r} of project {project!r} into"
    copies: dict[str, _Copy] = {}
    with _fsutil.storage_errors(what, adir):
        _fsutil.ensure_dir(adir / "blobs")
        _fsutil.ensure_dir(ndir / "aliases")
        _commits.settle(adir, artifact.name)  # this process's last version of it: the hints
        hints = _check_newest(ndir, artifact)
        try:
            for entry, src in sorted(artifact._sources.items()):
                with _fsutil.storage_errors(f"store file {entry!r} ({str(src)!r}) of artifact "
                                            f"{artifact.name!r} in", adir / "blobs"):
                    copies[entry] = _stage(adir, src, entry, artifact.name, hints.get(entry))
        except BaseException:
            for copy in copies.values():
                if copy.tmp is not None:
                    _fsutil.unlink(copy.tmp)
            raise

    def commit() -> None:
        _commit_log(artifact, root, project, (head, refs, copies, wanted), what)

    artifact._commit = _commits.submit(_commits.Commit(adir, artifact.name, logged_by, commit))
    return artifact


def _check_newest(ndir: Path, artifact: Artifact) -> dict[str, dict[str, Any]]:
    """The newest version's files (hints for _stage), refusing now a type the name's versions
    are not of (the commit checks again under the lock)."""
    versions = _versions(ndir)
    if not versions:
        return {}
    latest = _read_manifest(ndir, versions[-1], artifact.name)
    _check_type(latest, artifact.name, artifact.type)
    return dict(latest["files"])


def _check_type(latest: dict[str, Any], name: str, type: str) -> None:
    if latest["type"] != type:
        raise ArtifactError(f"Cannot log artifact {name!r} as type {type!r}: its versions are "
                            f"of type {latest['type']!r}. Use another name.")


def _commit_log(artifact: Artifact, root: Path, project: str,
                draft: tuple[dict[str, Any], dict[str, str], dict[str, _Copy], list[str]],
                what: str) -> None:
    """The commit thread's part of log(): name the copies, write the manifest and aliases,
    then make ``artifact`` the stored version. A copy not yet named is removed on a failure."""
    head, refs, copies, wanted = draft
    adir = artifacts_dir(root, project)
    ndir = _name_dir(adir, head["name"])
    algorithm = _ALGORITHM[ARTIFACT_FORMAT]
    files: dict[str, dict[str, Any]] = {}
    try:
        with _fsutil.storage_errors(what, adir):
            for entry, copy in copies.items():
                with _fsutil.storage_errors(f"store file {entry!r} of artifact "
                                            f"{head['name']!r} in", adir / "blobs"):
                    hexdigest = copy.hexdigest or _name_copy(adir, copy, algorithm)
                files[entry] = {algorithm: hexdigest, "size": copy.size}
            try:
                with _locks.hold(ndir / "lock", _LOCK_SECONDS):
                    version = _commit(ndir, _manifest_of(head, files, refs), wanted)
            except TimeoutError as exc:
                raise ArtifactError(f"Cannot log artifact {head['name']!r}: {exc}; another "
                                    "process is logging it. Retry when it is done.") from exc
    finally:
        for copy in copies.values():
            if copy.tmp is not None:
                _fsutil.unlink(copy.tmp)
    manifest = _read_manifest(ndir, version, head["name"])
    if artifact._staging is not None:  # new_file()'s files are stored now
        artifact._staging.cleanup()
    _attach(artifact, root, project, manifest, _aliases_of(ndir, version))


def _commit(ndir: Path, draft: dict[str, Any], aliases: list[str]) -> int:
    """Under the name's lock: the next version's manifest (or the latest's, when nothing
    changed, as W&B does), then the aliases."""
    name = draft["name"]
    versions = _versions(ndir)
    latest = _read_manifest(ndir, versions[-1], name) if versions else None
    if latest is not None:
        _check_type(latest, name, draft["type"])
    if latest is not None and latest["digest"] == draft["digest"]:
        version = int(latest["version"])
    else:
        version = versions[-1] + 1 if versions else 0
        for _ in range(1000):  # a writer without the lock (a store shared over a lockless mount)
            draft["version"] = version
            if _fsutil.create_exclusive(ndir / f"v{version}.json", dumps(draft)):
                break
            version += 1
        else:
            raise ArtifactError(f"Cannot log artifact {name!r}: no free version number "
                                f"after v{version} in {str(ndir)!r}.")
    for alias in aliases:
        _fsutil.atomic_write(ndir / "aliases" / f"{alias}.json", dumps({"version": version}))
    return version


def use(spec: str | Artifact, root: Path, project: str, user: tuple[str, str] | None) -> Artifact:
    """Find a version (``name``, ``name:alias``, ``name:vN``, ``[entity/]project/name:alias``) and
    record that run ``user`` (project, id) used it, in ``root``: the run's lineage stays with
    the run, and goes up with its next sync. A version the store lacks is read from
    LOCALTRACK_ARTIFACT_REMOTE when that names a synced copy (an air-gapped node's view of
    what other nodes logged); the local store is asked first."""
    artifact = spec if isinstance(spec, Artifact) else _find_or_fetch(root, spec, project)
    artifact._require_logged("use")
    if user is not None:
        adir = artifacts_dir(root, _naming.project_name(artifact.project or project))
        folder = _name_dir(adir, artifact.name) / "used" / str(artifact._version)
        marker = folder / f"{user[0]}@{user[1]}.json"
        with _fsutil.storage_errors(f"record the use of artifact {artifact.qualified_name!r} in",
                                    folder):
            _fsutil.ensure_dir(folder)
            if not marker.exists():
                _fsutil.atomic_write(marker, dumps({"project": user[0], "run_id": user[1],
                                                    "time": time.time()}))
    return artifact


def _find_or_fetch(root: Path, spec: str, project: str) -> Artifact:
    try:
        return find(root, spec, project)
    except ArtifactNotFoundError as exc:
        remote = _settings.artifact_remote()
        if remote is None:
            raise ArtifactNotFoundError(f"{exc} To read it from a synced copy of another "
                                        "store, set LOCALTRACK_ARTIFACT_REMOTE to that copy "
                                        "(a directory or s3://...).", project=exc.project,
                                        path=exc.path) from None
        try:
            return find(open_store(remote), spec, project)
        except ArtifactNotFoundError as again:
            raise ArtifactNotFoundError(f"{exc} Nor in LOCALTRACK_ARTIFACT_REMOTE="
                                        f"{redact(remote)!r}: {again}", project=exc.project,
                                        path=exc.path) from None


# -- reading ------------------------------------------------------------------------------------


def parse_spec(spec: object, project: str | None) -> tuple[str, str, str]:
    """(project, name, alias or vN) of ``[[entity/]project/]name[:alias]``."""
    if not isinstance(spec, str) or not spec:
        raise InvalidNameError(f"An artifact is named as 'name:alias' or 'project/name:v3', "
                               f"got {spec!r}.")
    path, _, alias = spec.partition(":")
    parts = path.split("/")
    if len(parts) == 3:
        parts = parts[1:]  # W&B's entity: a store has one namespace
    if len(parts) == 2:
        project = parts[0]
    elif len(parts) != 1:
        raise InvalidNameError(f"Invalid artifact {spec!r}: expected 'name:alias', "
                               "'project/name:alias' or 'entity/project/name:alias'.")
    if project is None:
        raise UsageError(f"Artifact {spec!r} needs its project: write 'project/{spec}'.")
    alias = alias or "latest"
    if _naming.version_number(alias) is None:
        _naming.alias_name(alias)
    return _naming.project_name(project), _naming.artifact_name(parts[-1]), alias


def find(root: Where, spec: str, project: str | None = None) -> Artifact:
    project, name, alias = parse_spec(spec, project)
    adir = artifacts_dir(root, project)
    if isinstance(adir, Path):
        _commits.settle(adir, name)  # this process's own versions of it are read, not missed
    ndir = _name_dir(adir, name)
    version = _naming.version_number(alias)
    if alias == "latest":
        versions = _versions(ndir)
        if not versions:
            raise ArtifactNotFoundError(_missing(root, project, name, "version"),
                                        project=project, path=str(ndir))
        version = versions[-1]
    if version is None:
        pointer = ndir / "aliases" / f"{alias}.json"
        try:
            data = loads(pointer.read_bytes())
            version = int(data["version"])
        except FileNotFoundError:
            raise ArtifactNotFoundError(_missing(root, project, name, f"alias {alias!r}"),
                                        project=project, path=str(pointer)) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptRunError(f"The alias file {str(pointer)!r} of artifact {name!r} cannot "
                                  f"be read ({exc}); log the artifact again with that alias.",
                                  project=project, path=str(pointer)) from exc
        except OSError as exc:
            raise _fsutil.storage_error(f"read alias {alias!r} of artifact {name!r} at",
                                        str(pointer), exc) from exc
    manifest = _read_manifest(ndir, version, name, project=project, root=root)
    artifact = Artifact.__new__(Artifact)
    artifact._commit = None
    _attach(artifact, root, project, manifest, _aliases_of(ndir, version))
    return artifact


def _missing(root: Where, project: str, name: str, what: str) -> str:
    return (f"No {what} of artifact {name!r} in project {project!r} under {str(root)!r}; "
            "Api().artifacts() lists what is stored.")


def _read_manifest(ndir: Where, version: int, name: str, *, project: str | None = None,
                   root: Where | None = None) -> dict[str, Any]:
    path = ndir / f"v{version}.json"
    try:
        manifest = loads(path.read_bytes())
    except FileNotFoundError:
        raise ArtifactNotFoundError(_missing(root or ndir, project or "?", name, f"version v{version}"),
                                    path=str(path)) from None
    except OSError as exc:
        raise _fsutil.storage_error(f"read version v{version} of artifact {name!r} at",
                                    str(path), exc) from exc
    except ValueError as exc:
        raise CorruptRunError(f"The manifest {str(path)!r} of artifact {name!r} cannot be parsed "
                              f"({exc}); restore it from a backup or a sync remote.",
                              path=str(path)) from exc
    newer = manifest.get("format") if isinstance(manifest, dict) else None
    if isinstance(newer, int) and newer > ARTIFACT_FORMAT:
        raise CorruptRunError(f"The manifest {str(path)!r} of artifact {name!r} uses artifact "
                              f"format {newer}, newer than this localtrack understands "
                              f"({ARTIFACT_FORMAT}); upgrade localtrack to read it.",
                              path=str(path))
    problem = _manifest_problem(manifest, version, name)
    if problem:
        raise CorruptRunError(f"The manifest {str(path)!r} of artifact {name!r} is not valid "
                              f"({problem}); restore it from a backup or a sync remote.",
                              path=str(path))
    return dict(manifest)


def _manifest_problem(m: object, version: int, name: str) -> str | None:
    """What is wrong with a manifest read from disk (a received store is input like any other)."""
    if not isinstance(m, dict):
        return "not an object"
    fmt = m.get("format")
    algorithm = _ALGORITHM.get(fmt) if type(fmt) is int and fmt <= ARTIFACT_FORMAT else None
    if algorithm is None:
        return f"format {m.get('format')!r}, this version reads 1 to {ARTIFACT_FORMAT}"
    if m.get("version") != version or m.get("name") != name:
        return "its name or version is not the file's"
    files, refs = m.get("files"), m.get("references")
    if not isinstance(files, dict) or not isinstance(refs, dict):
        return "no file list"
    if not isinstance(m.get("type"), str) or not isinstance(m.get("metadata") or {}, dict) \
            or not all(isinstance(u, str) for u in refs.values()):
        return "a type, metadata or reference of the wrong kind"
    try:
        decode_tree(m.get("metadata") or {})
    except ValueError as exc:
        return f"its metadata cannot be read ({exc})"
    for entry, info in files.items():
        try:
            _entry_path(entry, name)
        except InvalidNameError:
            return f"file name {entry!r} leaves the artifact"
        if not (isinstance(info, dict) and _digests.is_hex(info.get(algorithm))
                and isinstance(info.get("size"), int)
                and not any(a in info for a in _digests.ALGORITHMS if a != algorithm)):
            return f"entry {entry!r} has no valid {algorithm} and size"
    return None


def _versions(ndir: Where) -> list[int]:
    found = (_naming.version_number(n[:-5]) for n in _listing(ndir) if n.endswith(".json"))
    return sorted(v for v in found if v is not None)


def _aliases_of(ndir: Where, version: int) -> list[str]:
    """The aliases naming ``version``: ``latest`` is the highest version (no file to move: a
    crash after the manifest cannot leave it behind), the others are files."""
    versions = _versions(ndir)
    out = ["latest"] if versions and versions[-1] == version else []
    folder = ndir / "aliases"
    for name in sorted(n for n in _listing(folder) if n.endswith(".json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if int(loads((folder / name).read_bytes())["version"]) == version:
                out.append(name[:-5])
    return out


def _attach(artifact: Artifact, root: Where, project: str, manifest: dict[str, Any],
            aliases: list[str]) -> None:
    """Make ``artifact`` the stored version ``manifest`` describes (read from ``root``)."""
    artifact.name = manifest["name"]
    artifact.type = manifest["type"]
    artifact.description = manifest.get("description")
    artifact.metadata = dict(decode_tree(manifest.get("metadata") or {}))
    artifact.project = project
    artifact._version = int(manifest["version"])
    artifact._aliases = aliases
    artifact._root = root
    artifact._adir = artifacts_dir(root, project)
    artifact._manifest = manifest
    artifact._sources, artifact._refs = {}, {}
    artifact._staging = None


def list_artifacts(root: Where, project: str, type: str | None = None,
                   name: str | None = None) -> list[Artifact]:
    """Every version in a project (of one type or name), by name then version."""
    if name and "/" in name:
        project, name, _ = parse_spec(name, None)
    adir = artifacts_dir(root, _naming.project_name(project))
    if isinstance(adir, Path):
        _commits.settle(adir)
    names = [_naming.artifact_name(name)] if name else \
        sorted(n for n in _listing(adir / "names") if not n.startswith("."))
    out = []
    for n in names:
        for v in _versions(_name_dir(adir, n)):
            art = find(root, f"{project}/{n}:v{v}")
            if type is None or art.type == type:
                out.append(art)
    return out


# -- collecting orphans (doctor --fix) -----------------------------------------------------------


def orphan_blobs(root: Path, project: str, now: float | None = None,
                 grace: float = GRACE_SECONDS) -> tuple[list[Path], list[LocaltrackError]]:
    """Blobs and temp files no manifest names, older than ``grace`` seconds (younger ones may
    be a live writer's, whose manifest is still to come); and the manifests that cannot be read.
    With any of those, no blob is an orphan: it may be what the damaged manifest names."""
    adir = artifacts_dir(root, project)
    blobs = adir / "blobs"
    if not blobs.is_dir():
        return [], []
    named: set[Path] = set()
    damaged: list[LocaltrackError] = []
    names_dir = adir / "names"
    for ndir in names_dir.iterdir() if names_dir.is_dir() else []:
        for v in _versions(ndir):
            try:
                manifest = _read_manifest(ndir, v, ndir.name)
            except LocaltrackError as exc:
                damaged.append(exc)
                continue
            named.update(_blob(adir, *address(i)) for i in manifest["files"].values())
    if damaged:
        return [], damaged
    cutoff = (time.time() if now is None else now) - grace
    found = []
    # Every file under blobs/ (links not followed): SHA-256 blobs, BLAKE3 ones, temporaries.
    for folder, _, names in os.walk(blobs):
        for path in (Path(folder, n) for n in names):
            if path in named:
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.lstat().st_mtime < cutoff:
                    found.append(path)
    return sorted(found), []


def log_for_run(obj: Artifact | str | os.PathLike[str], name: str | None, type: str | None,
                aliases: list[str] | None, root: Path, project: str, rid: str) -> Artifact:
    """run.log_artifact(): W&B also takes a file or folder path (``name`` defaults to its own)."""
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        art = Artifact(name or path.name, type or "unspecified")
        if path.is_dir():
            art.add_dir(path)
        else:
            art.add_file(path)
        obj = art
    return log(obj, root, project, aliases, f"{project}/{rid}")
