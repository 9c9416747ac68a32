"""A remote over any pyarrow.fs filesystem: s3:// (and S3-compatible stores), gs://, hdfs://.

Object stores (S3, GCS) write an object whole on close, so ``put`` writes in
place; other filesystems (HDFS) get a temporary and a rename. Every pyarrow
or OS error becomes a RemoteError here, with the URL shown without
credentials; ``transient`` is False only for what a retry cannot fix
(a missing bucket, refused credentials).
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from typing import Any

from ..errors import RemoteError
from ._base import Entry, FileChunks, Opener, Remote, check_key

_OBJECT_STORES = ("s3", "gcs")
_PERMANENT_MARKERS = ("ACCESS_DENIED", "NO_SUCH_BUCKET", "INVALID_ACCESS_KEY", "SIGNATURE_DOES_NOT_MATCH",
                      "AccessDenied", "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                      "HTTP status 403", "HTTP status 401", "Forbidden", "PermissionDenied")


def is_transient(exc: BaseException) -> bool:
    text = str(exc)
    return not any(marker in text for marker in _PERMANENT_MARKERS)


class ArrowRemote(Remote):
    def __init__(self, fs: Any, base: str, url: str, secrets: tuple[str, ...] = ()) -> None:
        self.fs = fs
        self.base = base.rstrip("/")
        self.url = url
        self._secrets = tuple(x for x in secrets if x)
        self._object_store = fs.type_name in _OBJECT_STORES

    def _path(self, key: str) -> str:
        return f"{self.base}/{check_key(key, self.url)}" if key else self.base

    def _error(self, what: str, key: str, exc: BaseException) -> RemoteError:
        transient = is_transient(exc)
        hint = "" if transient else " Check the bucket name and the credentials (AWS_* variables)."
        text = str(exc)
        for secret in self._secrets:  # some servers echo the key id; never pass a credential on
            text = text.replace(secret, "***")
        return RemoteError(f"Could not {what} {self.describe(key)!r}: {text}.{hint}", url=self.url,
                           path=self.describe(key), transient=transient)

    def get(self, key: str) -> bytes:
        import pyarrow as pa

        try:
            with self.fs.open_input_stream(self._path(key)) as fh:
                return bytes(fh.read())
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise self._error("read", key, exc) from exc

    def put(self, key: str, data: bytes) -> None:
        import pyarrow as pa

        path = self._path(key)
        try:
            if self._object_store:
                with self.fs.open_output_stream(path) as fh:
                    fh.write(data)
                return
            parent = path.rpartition("/")[0]
            self.fs.create_dir(parent, recursive=True)
            tmp = f"{parent}/.tmp-{path.rpartition('/')[2]}.{secrets.token_hex(6)}"
            with self.fs.open_output_stream(tmp) as fh:
                fh.write(data)
            # If we die here: a temporary that readers skip (its name starts with .tmp-).
            self.fs.move(tmp, path)
        except (OSError, pa.ArrowException) as exc:
            raise self._error("write", key, exc) from exc

    def put_file(self, key: str, path: Path, chunk: int, digest: str | None = None,
                 opener: Opener | None = None) -> int:
        """As put, streamed: an object store gets a multipart upload once the bytes pass
        pyarrow's part size (completed on close, so a reader sees the whole object or none;
        a process killed before leaves an unfinished upload no reader sees), other filesystems
        a temporary and a rename; about a chunk and a part are held at a time
        (benchmarks/RESULTS.md: 111 MiB peak for a 512 MiB blob, 1 GiB before)."""
        import pyarrow as pa

        target = self._path(key)
        parent, _, name = target.rpartition("/")
        tmp = target if self._object_store else f"{parent}/.tmp-{name}.{secrets.token_hex(6)}"
        try:
            if not self._object_store:
                self.fs.create_dir(parent, recursive=True)
            size = self._stream(FileChunks(path, chunk, digest, opener), tmp)
            if tmp != target:
                # If we die here: a temporary that readers skip (its name starts with .tmp-).
                self.fs.move(tmp, target)
        except (OSError, pa.ArrowException) as exc:
            raise self._error("write", key, exc) from exc
        return size

    def _stream(self, chunks: FileChunks, dst_path: str) -> int:
        """Copy a file to a new object. pyarrow completes an upload on close whatever came
        before (its __exit__ too): a failure or a refused file mid-way removes what it left."""
        dst = self.fs.open_output_stream(dst_path)
        try:
            for piece in chunks:
                dst.write(piece)
                # Waits for the parts uploading in the background: without it they queue up
                # in memory as fast as the disk reads (the whole file, on a slow link).
                dst.flush()
        except BaseException:
            with contextlib.suppress(Exception):
                dst.close()
            with contextlib.suppress(Exception):
                self.fs.delete_file(dst_path)
            raise
        dst.close()
        return chunks.size

    def _select(self, key: str, recursive: bool) -> list[Any]:
        """The FileInfos below ``key`` (every level: one flat listing, a request per 1,000
        objects on S3); [] when there is no such folder."""
        import pyarrow as pa
        import pyarrow.fs as pafs

        try:
            return list(self.fs.get_file_info(pafs.FileSelector(self._path(key), recursive=recursive,
                                                                allow_not_found=True)))
        except FileNotFoundError:
            return []
        except (OSError, pa.ArrowException) as exc:
            if "Not a directory" in str(exc):
                return []
            raise self._error("list", key, exc) from exc

    def list(self, key: str) -> dict[str, Entry]:
        import pyarrow.fs as pafs

        out = {}
        for info in self._select(key, False):
            if info.base_name.startswith(".tmp-"):
                continue
            mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
            out[info.base_name] = Entry(info.type == pafs.FileType.Directory, info.size or 0, mtime)
        return out

    def walk(self, key: str) -> dict[str, Entry]:
        import pyarrow.fs as pafs

        base = self._path(key) + "/"
        out = {}
        for info in self._select(key, True):
            rel = info.path.removeprefix(base)
            if info.type != pafs.FileType.File or any(p.startswith(".tmp-") for p in rel.split("/")):
                continue
            mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
            out[rel] = Entry(False, info.size or 0, mtime)
        return out

    def info(self, key: str) -> Entry | None:
        import pyarrow as pa
        import pyarrow.fs as pafs

        try:
            info = self.fs.get_file_info(self._path(key))
        except (OSError, pa.ArrowException) as exc:
            raise self._error("look up", key, exc) from exc
        if info.type == pafs.FileType.NotFound:
            return None
        mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
        return Entry(info.type == pafs.FileType.Directory, info.size or 0, mtime)

    def delete(self, key: str) -> None:
        import pyarrow as pa
        import pyarrow.fs as pafs

        path = self._path(key)
        try:
            info = self.fs.get_file_info(path)
            if info.type == pafs.FileType.Directory:
                self.fs.delete_dir(path)
            elif info.type != pafs.FileType.NotFound:
                self.fs.delete_file(path)
        except FileNotFoundError:
            pass
        except (OSError, pa.ArrowException) as exc:
            raise self._error("delete", key, exc) from exc

    def open_input(self, key: str) -> Any:
        import pyarrow as pa

        try:
            return self.fs.open_input_file(self._path(key))
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise self._error("read", key, exc) from exc

    def check(self) -> None:
        """One request that tells a missing bucket or refused credentials from a working remote."""
        import pyarrow as pa
        import pyarrow.fs as pafs

        if self.fs.type_name != "s3":
            self.list("")
            return
        bucket = self.base.split("/", 1)[0]
        try:
            info = self.fs.get_file_info(bucket)
        except (OSError, pa.ArrowException) as exc:
            raise self._error("reach the bucket of", "", exc) from exc
        if info.type == pafs.FileType.NotFound:
            raise RemoteError(f"The bucket {bucket!r} of {self.url!r} does not exist (or these "
                              "credentials cannot see it); create it or fix the URI.", url=self.url)
