"""Artifacts (issue 20): log_artifact of one big file against cp, and what a second version adds.

    python benchmarks/bench_artifacts.py make FILE --mib 1024      a file of random bytes
    python benchmarks/bench_artifacts.py log FILE STORE            one process: init,
        log_artifact(FILE), wait(), finish; prints the seconds log_artifact took inside it (the
        copy: what the caller waits for) and then wait() (the commit thread's hash, fsync and
        manifest). Time it as a whole process against `cp FILE DEST` (and `cp` + `sync DEST`:
        the commit fsyncs) with any process timer, e.g. /usr/bin/time -v; remove STORE and DEST
        before each run, or the second run only hashes (the blob is stored already).
    python benchmarks/bench_artifacts.py parts FILE DIR --slices 16,64,256 --hashes blake3,sha256
        [--threads 1,auto] [--repeats 3]
        the parts, in this process, for each slice size and hash (and BLAKE3's threads: 1, as
        the commit hashes; auto = BLAKE3's own threads): the copy of FILE into DIR that the call
        makes (_artifacts._copy), then the commit's hash + fsync + rename of it
        (_artifacts._name_copy), with the process's CPU seconds; the variants alternate, each
        repeat in another order; medians.
    python benchmarks/bench_artifacts.py pair FILE DIR --repeats 7
        the call against `cp FILE DIR/cpdest`, in one process, alternating (cp first on even
        repeats): the seconds log_artifact(FILE) takes to return, the seconds `cp` takes as a
        subprocess (its start included, a few ms), their ratio pair by pair, and wait()'s seconds
        after the call; the store and the copy are removed and `sync` run between the two, not
        timed, so each starts with no dirty pages of the other's; medians.
    python benchmarks/bench_artifacts.py delta DIR STORE --files 100 --kib 1024
        logs DIR's files as v0, rewrites 10% of them, logs v1, prints the bytes v1 added to the
        store against the bytes changed.
    python benchmarks/bench_artifacts.py sync STORE REMOTE
        syncs STORE (after `log`) to REMOTE, a directory or an s3:// URI (e.g. a `moto_server`
        started in another process: `s3://bkt/x?endpoint_override=127.0.0.1:5000&scheme=http`
        with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set, its bucket made first); prints
        the seconds and the process's peak RSS before and after (blobs are streamed, so the
        growth stays near LOCALTRACK_UPLOAD_CHUNK_BYTES, not the file's size).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path


def make(path: Path, mib: int) -> None:
    with open(path, "wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(1 << 20))


def log(path: Path, store: Path) -> None:
    import localtrack

    run = localtrack.init(project="bench", dir=store)
    start = time.perf_counter()
    art = run.log_artifact(localtrack.Artifact("ckpt", "model").add_file(path))
    took = time.perf_counter() - start
    art.wait()
    committed = time.perf_counter() - start - took
    run.finish()
    print(f"log_artifact {art.version} of {path.stat().st_size} bytes: {took:.3f} s, "
          f"then wait() {committed:.3f} s")


def pair(path: Path, folder: Path, repeats: int) -> None:
    import statistics
    import subprocess

    import localtrack

    folder.mkdir(parents=True, exist_ok=True)
    store, dest = folder / "store", folder / "cpdest"
    run = localtrack.init(project="bench", dir=store)

    def clean() -> None:
        shutil.rmtree(store / "bench" / "artifacts", ignore_errors=True)
        dest.unlink(missing_ok=True)
        os.sync()

    def copy() -> float:
        start = time.perf_counter()
        subprocess.run(["cp", str(path), str(dest)], check=True)
        return time.perf_counter() - start

    def call() -> tuple[float, float]:
        start = time.perf_counter()
        art = run.log_artifact(localtrack.Artifact("ckpt", "model").add_file(path))
        took = time.perf_counter() - start
        if hasattr(art, "wait"):  # (a tree before it committed in the background has none)
            art.wait()
        return took, time.perf_counter() - start - took

    rows = []
    for r in range(repeats):
        clean()
        first = copy() if r % 2 == 0 else call()
        clean()
        second = call() if r % 2 == 0 else copy()
        (cp_s, (call_s, wait_s)) = (first, second) if r % 2 == 0 else (second, first)
        rows.append((call_s, cp_s, call_s / cp_s, wait_s))
    clean()
    run.finish()
    call_m, cp_m, ratio_m, wait_m = (statistics.median(x[i] for x in rows) for i in range(4))
    print(f"log_artifact call {call_m:.3f} s, cp {cp_m:.3f} s, call/cp {ratio_m:.2f} "
          f"({min(x[2] for x in rows):.2f} .. {max(x[2] for x in rows):.2f}), then wait() "
          f"{wait_m:.3f} s; medians of {repeats}, load average {os.getloadavg()[0]:.1f} at the end")


def _stored(store: Path) -> int:
    """Bytes of every file of the artifact store (blobs, manifests, aliases)."""
    return sum(p.stat().st_size for p in (store / "bench" / "artifacts").rglob("*")
               if p.is_file())


def delta(folder: Path, store: Path, files: int, kib: int) -> None:
    import localtrack

    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"shard{i:04d}.bin").write_bytes(os.urandom(kib << 10))
    with localtrack.init(project="bench", dir=store) as run:
        run.log_artifact(localtrack.Artifact("ckpt", "model").add_dir(folder))
        first = _stored(store)
        changed = 0
        for i in range(0, files, 10):  # every tenth file: 10%
            (folder / f"shard{i:04d}.bin").write_bytes(os.urandom(kib << 10))
            changed += kib << 10
        start = time.perf_counter()
        run.log_artifact(localtrack.Artifact("ckpt", "model").add_dir(folder))
        took = time.perf_counter() - start
    added = _stored(store) - first
    print(f"v0: {files} files, {first} bytes stored (blobs and manifest); v1 rewrote {changed} bytes "
          f"({files // 10} files) and added {added} bytes ({added / first:.1%} of v0) "
          f"in {took:.3f} s")


def parts(path: Path, folder: Path, slices: list[int], hashes: list[str], threads: list[str],
          repeats: int) -> None:
    import statistics

    import blake3

    from localtrack import _artifacts, _digests, _fsutil

    variants = [(s, h, t) for s in slices for h in hashes for t in (threads if h == "blake3" else ["1"])]
    plain = _digests.hasher
    times: dict[tuple[int, str, str], list[tuple[float, ...]]] = {v: [] for v in variants}
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    for r in range(repeats):
        for size, algo, thr in variants[r % len(variants):] + variants[:r % len(variants)]:
            _artifacts._SLICE = size << 20
            _digests.hasher = (lambda a: blake3.blake3(max_threads=blake3.blake3.AUTO)) \
                if thr == "auto" else plain  # type: ignore[assignment]
            dst = folder / "blobs" / "parts.tmp"
            cpu0, start = os.times(), time.perf_counter()
            with open(path, "rb") as fin, open(dst, "wb") as fout:
                n = _artifacts._copy(fin, fout)
            copied, cpu1 = time.perf_counter(), os.times()
            hexdigest = _artifacts._name_copy(folder, _artifacts._Copy(n, tmp=dst), algo)
            end, cpu2 = time.perf_counter(), os.times()
            _fsutil.unlink(folder / _artifacts.blob_path(algo, hexdigest))
            times[(size, algo, thr)].append(
                (copied - start, end - copied, cpu1.user + cpu1.system - cpu0.user - cpu0.system,
                 cpu2.user + cpu2.system - cpu1.user - cpu1.system))
    _digests.hasher = plain
    print("| slice | hash | threads | copy (the call) | hash+fsync+rename (the commit) "
          "| CPU: copy | CPU: commit |")
    print("| ---: | --- | --- | ---: | ---: | ---: | ---: |")
    for (size, algo, thr), runs in times.items():
        c, h, cc, hc = (statistics.median(x[i] for x in runs) for i in range(4))
        print(f"| {size} MiB | {algo} | {thr} | {c:.3f} s | {h:.3f} s | {cc:.2f} s | {hc:.2f} s |")
    print(f"(medians of {repeats}; load average {os.getloadavg()[0]:.1f} at the end)")


def _peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def sync(store: Path, remote: str) -> None:
    import pyarrow.fs  # noqa: F401  (loaded before the baseline: it is not what is measured)

    import localtrack
    before = _peak_mib()
    start = time.perf_counter()
    report = localtrack.sync(remote, dir=store)
    took = time.perf_counter() - start
    print(f"sync: {report.uploaded_bytes} bytes in {report.uploaded_files} objects, {took:.2f} s; "
          f"peak RSS {before:.0f} MiB before, {_peak_mib():.0f} MiB after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("make")
    p.add_argument("file", type=Path)
    p.add_argument("--mib", type=int, default=1024)
    p = sub.add_parser("log")
    p.add_argument("file", type=Path)
    p.add_argument("store", type=Path)
    p = sub.add_parser("parts")
    p.add_argument("file", type=Path)
    p.add_argument("dir", type=Path)
    p.add_argument("--slices", default="64", help="MiB per copy_file_range slice, comma-separated")
    p.add_argument("--hashes", default="blake3")
    p.add_argument("--threads", default="1")
    p.add_argument("--repeats", type=int, default=3)
    p = sub.add_parser("pair")
    p.add_argument("file", type=Path)
    p.add_argument("dir", type=Path)
    p.add_argument("--repeats", type=int, default=7)
    p = sub.add_parser("delta")
    p.add_argument("dir", type=Path)
    p.add_argument("store", type=Path)
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--kib", type=int, default=1024)
    p = sub.add_parser("sync")
    p.add_argument("store", type=Path)
    p.add_argument("remote")
    args = parser.parse_args()
    if args.what == "make":
        make(args.file, args.mib)
    elif args.what == "log":
        log(args.file, args.store)
    elif args.what == "pair":
        pair(args.file, args.dir, args.repeats)
    elif args.what == "sync":
        sync(args.store, args.remote)
    elif args.what == "parts":
        parts(args.file, args.dir, [int(x) for x in args.slices.split(",")],
              args.hashes.split(","), args.threads.split(","), args.repeats)
    else:
        delta(args.dir, args.store, args.files, args.kib)


if __name__ == "__main__":
    main()
