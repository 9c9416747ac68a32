"""Remote stores: open a URI or path as a Remote. pyarrow is imported only for URIs.

A remote is written only by sync and has the layout of a local store, with
logs as folders of chunks (see _chunks). Credentials come from the standard
AWS environment variables, the URI's user info or its query; they go to the
filesystem client and nowhere else: ``Remote.url`` and ``remote_key`` drop them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import UsageError
from ._base import Entry, Lru, PerRemote, Remote, RemotePath
from ._dir import DirRemote

__all__ = ["Entry", "Lru", "PerRemote", "Remote", "RemotePath", "is_uri", "open_remote", "open_store",
           "redact", "remote_key"]

_S3_QUERY = ("endpoint_override", "region", "scheme", "access_key", "secret_key", "session_token",
             "allow_bucket_creation")
_SHOWN_QUERY = ("endpoint_override", "region", "scheme")


def is_uri(value: object) -> bool:
    return isinstance(value, str) and "://" in value


def redact(uri: str) -> str:
    """The URI without user info and with only the query keys that are not secrets."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    query = [(k, v) for k, v in parse_qsl(parts.query) if k in _SHOWN_QUERY]
    text = f"{parts.scheme}://{host}{parts.path}"
    return text + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")


def remote_key(url: str) -> str:
    """A short stable name for a remote (credentials dropped), used for local sync state."""
    return hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]


def open_remote(target: str | os.PathLike[str]) -> Remote:
    """A Remote for a directory path, ``file://``, ``s3://`` or any URI pyarrow.fs opens."""
    text = os.fspath(target)
    if text.startswith("file://"):
        text = unquote(urlsplit(text).path)
    if "://" not in text:
        root = Path(text).expanduser().absolute()
        return DirRemote(root)
    scheme = text.split("://", 1)[0].lower()
    if scheme in ("s3", "s3a"):
        return _open_s3(text)
    return _open_arrow(text)


def open_store(target: str | os.PathLike[str]) -> Path | RemotePath:
    """A synced copy to read as a store: a directory remote as a local path (read as any local
    store is), any other remote through RemotePath."""
    remote = open_remote(target)
    return remote.root if isinstance(remote, DirRemote) else RemotePath(remote)


def _open_s3(uri: str) -> Remote:
    import pyarrow.fs as pafs

    from ._arrow import ArrowRemote

    url = redact(uri)
    parts = urlsplit(uri)
    bucket = parts.hostname
    if not bucket:
        raise UsageError(f"Invalid remote {url!r}: an S3 URI looks like s3://BUCKET/PREFIX.")
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - set(_S3_QUERY))
    if unknown:
        raise UsageError(f"Invalid remote {url!r}: unknown query parameter(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(_S3_QUERY)}.")
    env = os.environ
    endpoint = (query.get("endpoint_override") or env.get("AWS_ENDPOINT_URL_S3")
                or env.get("AWS_ENDPOINT_URL"))
    opts: dict[str, object] = {
        "access_key": query.get("access_key") or (unquote(parts.username) if parts.username else None),
        "secret_key": query.get("secret_key") or (unquote(parts.password) if parts.password else None),
        "session_token": query.get("session_token"),
        "region": query.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        or ("us-east-1" if endpoint else None),
        "allow_delayed_open": True,   # small objects go up in one PUT instead of a multipart upload
        "connect_timeout": 5.0,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=2),
    }
    if bool(opts["access_key"]) != bool(opts["secret_key"]):
        raise UsageError(f"Invalid remote {url!r}: give both an access key and a secret key, or "
                         "neither (then the AWS_* variables or ~/.aws are used).")
    if endpoint:
        opts["endpoint_override"] = endpoint
        if endpoint.startswith("http://"):
            opts["scheme"] = "http"
    if query.get("scheme"):
        opts["scheme"] = query["scheme"]
    if query.get("allow_bucket_creation", "").lower() in ("1", "true", "yes"):
        opts["allow_bucket_creation"] = True
    shown = url if not endpoint or "endpoint_override" in url else f"{url} (endpoint {redact(endpoint)})"
    try:
        fs = pafs.S3FileSystem(**{k: v for k, v in opts.items() if v is not None})
    except (ValueError, TypeError, OSError) as exc:
        raise UsageError(f"Invalid remote {shown!r}: {exc}") from None
    secrets = (str(opts["access_key"] or ""), str(opts["secret_key"] or ""), str(opts["session_token"] or ""),
               *(env.get(k, "") for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")))
    return ArrowRemote(fs, f"{bucket}{parts.path}".rstrip("/"), shown, secrets)


def _open_arrow(uri: str) -> Remote:
    import pyarrow as pa
    import pyarrow.fs as pafs

    from ._arrow import ArrowRemote

    url = redact(uri)
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError, pa.ArrowException) as exc:
        message = str(exc).replace(uri, url)
        raise UsageError(f"Cannot open the remote {url!r}: {message}. Use a directory path, "
                         "file://, s3://, gs:// or hdfs://.") from None
    return ArrowRemote(fs, path, url)
