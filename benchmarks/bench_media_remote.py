"""Media read from a synced copy on S3 (issue 20): requests and time for ``--images`` images.

A run logs ``--images`` 224x224x3 noise images (its logs rotating every ~2 MB), is synced to
the tests' loopback S3 server (tests/s3server.py: moto's, in this process, which counts every
request it serves) finished and sealed ("sealed"), and a second one synced while it lives
("live": its blobs are folders of chunks there). For each, in a fresh child process per
measurement, for this tree and ``--baseline DIR`` (another localtrack source tree) in
alternating order:

- ``all``: ``Api(uri).run(p).media("img")``, every image in one call;
- ``each``: one ``media("img", steps=[s])`` call per image through one Api, as the dashboard
  asks for the items it shows (each call reads the key's history too);
- ``ui``: the dashboard (``make_server`` on the URI, in the child) asked for its media keys
  once, then for each image by its item route (``/api/media/item``), one at a time, as the
  run page's slider does; counted from when its warm-up (which reads every run) is over.

Reported per tree, state and mode: requests served (GET/HEAD), wall time and CPU time (user +
system of the child) of the reads only, medians of ``--repeats``.

    python benchmarks/bench_media_remote.py [--images 200] [--repeats 3] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


MARK = ".bench-mark"  # a key the ui worker looks up: the requests before it are its start's


def worker(uri: str, mode: str, images: int) -> None:
    """Read the images (``mode``: all, each, ui) and print the wall and CPU seconds it took."""
    import localtrack

    def cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    if mode == "ui":
        server = _dashboard(uri)
    t0, c0 = time.perf_counter(), cpu()
    if mode == "ui":
        got = _items(server.port, images)
        server.shutdown()
    else:
        run = localtrack.Api(uri).run("p/r")
        if mode == "all":
            got = len(run.media("img"))
        else:
            got = sum(len(run.media("img", steps=[s])) for s in range(images))
    assert got == images, got
    print(json.dumps({"wall": time.perf_counter() - t0, "cpu": cpu() - c0}))


def _dashboard(uri: str) -> Any:
    """The dashboard over ``uri``, serving on a thread once its warm-up is over (then MARK is
    looked up on the remote, for the driver to count from)."""
    import threading

    from localtrack._remotes import open_remote
    from localtrack._ui import make_server

    server = make_server(uri, port=0)
    for thread in threading.enumerate():
        if thread.name == "localtrack-ui-warmup":
            thread.join()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    open_remote(uri).info(MARK)
    return server


def _items(port: int, images: int) -> int:
    """Ask the dashboard on ``port`` for the media keys, then for each image; how many came."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    got = 0
    for route in ["/api/media?path=p/r", *(f"/api/media/item?path=p/r&key=img&step={s}"
                                             for s in range(images))]:
        conn.request("GET", route)
        res = conn.getresponse()
        body = res.read()
        assert res.status == 200, body[:200]
        got += route.startswith("/api/media/item")
    conn.close()
    return got


def make(server: Any, tmp: str, images: int, state: str) -> str:
    """A run of ``images`` images synced to a new bucket (live: synced 4 times while it logs)."""
    import numpy as np

    import localtrack
    from localtrack import _sealer

    os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "0"
    os.environ["LOCALTRACK_ROTATE_BYTES"] = str(2 << 20)
    store = os.path.join(tmp, state)
    uri = server.uri(server.new_bucket())
    rng = np.random.default_rng(0)
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(images):
        run.log({"img": localtrack.Image(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)),
                 "x": float(i)})
        if state == "live" and i % (images // 4) == images // 4 - 1:
            localtrack.sync(uri, dir=store)
    if state == "sealed":
        run.finish()
        for lock in __import__("pathlib").Path(store).rglob(_sealer.SEAL_LOCK):
            _sealer.wait_idle(lock.parent, timeout=300)
    assert localtrack.sync(uri, dir=store).ok
    if state == "live":
        run._drop()  # (the copy stays live: its blobs chunk folders)
    return uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", help="another localtrack source tree to compare")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return
    sys.path.insert(0, os.path.dirname(HERE))
    from tests.s3server import S3Server

    server = S3Server()
    server.start()
    os.environ.update(server.env())
    trees = {"this tree": os.path.dirname(HERE)}
    if args.baseline:
        trees["baseline"] = os.path.abspath(args.baseline)
    results: dict[tuple[str, str, str], list[tuple[int, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        uris = {state: make(server, tmp, args.images, state) for state in ("sealed", "live")}
        names = list(trees)
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:  # alternating order
                for state, uri in uris.items():
                    for mode in ("all", "each", "ui"):
                        env = {**os.environ, "PYTHONPATH": trees[name]}
                        env = {k: v for k, v in env.items() if not k.startswith("LOCALTRACK_")}
                        server.requests.clear()
                        out = subprocess.run([sys.executable, __file__, "--worker", uri, mode,
                                              str(args.images)], env=env, check=True,
                                             capture_output=True, text=True, timeout=1800)
                        took = json.loads(out.stdout.strip().splitlines()[-1])
                        served = [r[1] for r in server.requests]
                        marks = [i for i, path in enumerate(served) if path.endswith("/" + MARK)]
                        count = len(served) - (marks[0] + 1 if marks else 0)
                        results.setdefault((name, state, mode), []).append(
                            (count, took["wall"], took["cpu"]))
    server.stop()
    print(f"{args.images} images of 224x224x3 from loopback S3, median of {args.repeats}\n")
    print("| tree | blobs | reads | requests | per image | wall s | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for (name, state, mode), rows in results.items():
        req = statistics.median(r[0] for r in rows)
        wall = statistics.median(r[1] for r in rows)
        cpu = statistics.median(r[2] for r in rows)
        print(f"| {name} | {state} | {mode} | {req:.0f} | {req / args.images:.2f} | "
              f"{wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
