"""Uploading a project's artifacts: each blob once, a version's manifest after its blobs.

The remote gets the local layout (docs/format.md, "Artifacts"), so a directory remote is a
store Api(dir=...) reads artifacts from. Order per version: every blob it names that the
remote lacks, then its manifest (a reader of the remote never meets a manifest naming a
missing blob), then the aliases and use records. A blob is streamed from its file
(LOCALTRACK_UPLOAD_CHUNK_BYTES at a time), never read whole into memory. What went up is recorded locally, per
remote id (``.sync/<remote>-artifacts-<project>.json``), so a pass with nothing new makes no
request; a blob already on the remote (another store synced it) is not sent again. Blobs of
both artifact formats go up the same way, each checked against its name's hash as it is read;
the state records them by path under ``artifacts/`` (a state written before format 2 by their
bare SHA-256: such a blob, if a manifest not yet sent names it, costs one look on the remote).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _artifacts, _commits, _fsutil, _settings
from .._codec import dumps, loads
from ..errors import LocaltrackError

if TYPE_CHECKING:
    from ._syncer import Syncer, SyncReport


def upload(syncer: Syncer, project: str, report: SyncReport) -> None:
    """Upload what is new in ``project``'s artifacts; a failure leaves the project pending."""
    adir = _artifacts.artifacts_dir(syncer.root, project)
    _commits.settle(adir)  # a version this process logged before the sync goes up with it
    if not (adir / "names").is_dir():
        return
    state_path = syncer.root / ".sync" / f"{syncer.key}-artifacts-{project}.json"
    state = _load(state_path, syncer.remote_id)
    try:
        _upload(syncer, project, adir, state, report)
    except (LocaltrackError, OSError) as exc:
        with syncer._mutex:
            report.pending[f"{project}/artifacts"] = str(exc)
    finally:
        with _fsutil.storage_errors("record the artifacts synced in", state_path):
            _fsutil.atomic_write(state_path, dumps(state))


def _load(path: Path, remote_id: str | None) -> dict[str, Any]:
    try:
        state = loads(path.read_bytes())
    except (OSError, ValueError):
        state = None
    if not isinstance(state, dict) or state.get("remote_id") != remote_id:
        state = {"remote_id": remote_id}
    for key, kind in (("blobs", list), ("manifests", list), ("small", dict)):
        if not isinstance(state.get(key), kind):
            state[key] = kind()
    return state


def _upload(syncer: Syncer, project: str, adir: Path, state: dict[str, Any],
            report: SyncReport) -> None:
    blobs, manifests, small = set(state["blobs"]), set(state["manifests"]), state["small"]
    chunk = _settings.upload_chunk_bytes()

    def put(key: str, data: bytes) -> None:
        syncer.call(syncer.remote.put, key, data)
        with syncer._mutex:
            report.uploaded_files += 1
            report.uploaded_bytes += len(data)
        syncer.advance(len(data))

    def put_file(key: str, path: Path, digest: str) -> None:
        """A blob streamed (a checkpoint of many GiB is never held in memory) and checked
        against its name as it goes: a blob damaged here never lands on the remote."""
        size = syncer.call(syncer.remote.put_file, key, path, chunk, digest)
        with syncer._mutex:
            report.uploaded_files += 1
            report.uploaded_bytes += size
        syncer.advance(size)

    base = f"{project}/artifacts"
    for ndir in sorted((adir / "names").iterdir()):
        if syncer.stop.is_set():
            return
        for version in _artifacts._versions(ndir):
            key = f"{base}/names/{ndir.name}/v{version}.json"
            if key in manifests:
                continue
            manifest = _artifacts._read_manifest(ndir, version, ndir.name)
            for info in manifest["files"].values():
                algorithm, hexdigest = _artifacts.address(info)
                blob = _artifacts.blob_path(algorithm, hexdigest)
                blob_key = f"{base}/{blob}"
                if blob not in blobs and syncer.call(syncer.remote.info, blob_key) is None:
                    put_file(blob_key, adir / blob, f"{algorithm}:{hexdigest}")
                blobs.add(blob)
                state["blobs"] = sorted(blobs)
            put(key, (ndir / f"v{version}.json").read_bytes())
            manifests.add(key)
            state["manifests"] = sorted(manifests)
        # Aliases move and uses are added: sent when their bytes differ from what went up.
        for path in sorted([*(ndir / "aliases").glob("*.json"), *(ndir / "used").glob("*/*.json")]):
            data = path.read_bytes()
            key = f"{base}/names/{ndir.name}/{path.relative_to(ndir).as_posix()}"
            digest = hashlib.sha256(data).hexdigest()
            if small.get(key) != digest:
                put(key, data)
                small[key] = digest
