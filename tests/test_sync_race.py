"""Two stores syncing to one remote at once (issue 19, part 2: login nodes sharing a remote).

Each store has runs of its own and one run whose id the other store also uses (two different
runs: the case that would mix two runs' files on the remote). Real sync processes race; the
remote must hold every run whole, each exactly as one store has it, and the clash is reported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import localtrack
from localtrack import _sealer, _segments
from localtrack._sync import _upload

from . import s3server
from .helpers import settle
from .test_sync import same_table

s3_server, s3 = s3server.s3_server, s3server.s3  # the loopback S3 fixtures

TAKEN = "already holds (or another store is syncing) a different run with the id p/shared"


def fill(store: Path, tag: str, steps: int = 40) -> None:
    """Runs p/<tag>0..2 of this store alone, and p/shared (another run in each store)."""
    for rid in (f"{tag}0", f"{tag}1", f"{tag}2", "shared"):
        with localtrack.init(project="p", id=rid, dir=store, config={"store": tag}) as run:
            for step in range(steps):
                run.log({"v": float(step), "who": f"{tag}-{rid}"})
    settle(store)


def sync_proc(store: Path, remote: str, env: dict[str, str]) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "AWS_"))}
    full.update(env)
    return subprocess.Popen([sys.executable, "-m", "localtrack", "sync", "--dir", str(store),
                             "--to", remote, "--jobs", "4"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full)


def race(stores: list[Path], remote: str, env: dict[str, str]) -> list[tuple[int, str]]:
    procs = [sync_proc(store, remote, env) for store in stores]
    return [(p.wait(timeout=180), p.communicate()[1]) for p in procs]


def owner_of(run: localtrack.ApiRun, stores: list[Path]) -> Path:
    """The one store whose run this remote run is, all of it."""
    local = {store: {r.path: r for r in localtrack.Api(store).runs("p")} for store in stores}
    owners = [store for store in stores if run.path in local[store]
              and same_table(run.history_table(), local[store][run.path].history_table())
              and run.config == local[store][run.path].config]
    assert len(owners) == 1, (run.path, owners)
    return owners[0]


@pytest.mark.parametrize("kind", ["dir", "s3"])
def test_two_stores_racing_to_one_remote_never_mix_runs(tmp_path, request, kind):
    stores = [tmp_path / "a", tmp_path / "b"]
    fill(stores[0], "a")
    fill(stores[1], "b")
    env: dict[str, str] = {}
    if kind == "s3":
        server = request.getfixturevalue("s3")
        remote, env = server.uri(server.new_bucket()), server.env()
    else:
        remote = str(tmp_path / "remote")
    results = race(stores, remote, env)
    for _ in range(3):  # bounded: both may withdraw a simultaneous claim; a later sync settles it
        if any(code == 0 for code, _ in results):
            break
        results = race(stores, remote, env)
    for code, err in results:
        assert "Traceback" not in err, err
        assert code == 0 or (code == 1 and TAKEN in err), err
    assert sum(code == 1 for code, _ in results) == 1, results  # exactly one store was refused
    runs = {r.path: r for r in localtrack.Api(remote).runs("p")}
    assert sorted(runs) == sorted([f"p/{t}{i}" for t in "ab" for i in range(3)] + ["p/shared"])
    for path, run in runs.items():
        owner = owner_of(run, stores)
        if path != "p/shared":
            assert owner.name == path[2]
    winner = owner_of(runs["p/shared"], stores)
    loser = stores[1 - stores.index(winner)]

    # The refused store goes on writing its run and syncing: still refused, the remote unchanged.
    with localtrack.init(project="p", id="shared", dir=loser, resume="must") as run:
        run.log({"v": -1.0, "who": "late"})
    settle(loser)
    (code, err), = race([loser], remote, env)
    assert code == 1 and TAKEN in err, err
    assert owner_of(localtrack.Api(remote).run("p/shared"), stores) == winner
    (code, err), = race([winner], remote, env)
    assert code == 0, err


def test_a_run_synced_before_claims_is_recognised_by_its_run_json(tmp_path):
    """A remote run without an owner claim (synced by an older localtrack) is still told apart:
    the same run goes on syncing, a different run with its id is refused."""
    stores = [tmp_path / "a", tmp_path / "b"]
    fill(stores[0], "a")
    fill(stores[1], "b")
    remote = tmp_path / "remote"
    localtrack.sync(str(remote), dir=stores[0])
    claims = list((remote / "p" / "runs" / "shared").glob(".owner-*.json"))
    assert len(claims) == 1
    claims[0].unlink()
    (code, err), = race([stores[1]], str(remote), {})
    assert code == 1 and TAKEN in err, err
    assert not list((remote / "p" / "runs" / "shared").glob(".owner-*.json"))
    with localtrack.init(project="p", id="shared", dir=stores[0], resume="must") as run:
        run.log({"v": 99.0, "who": "more"})
    settle(stores[0])
    (code, err), = race([stores[0]], str(remote), {})
    assert code == 0, err
    assert owner_of(localtrack.Api(remote).run("p/shared"), stores) == stores[0]


def test_a_log_sealed_between_two_reads_of_one_pass_is_synced_from_its_segment(tmp_path, monkeypatch):
    """A pass reads a closed log's new rows, then reads the log again to send them merged with
    the small chunk sent before; a sealer takes the log into a segment in between (here: at
    that very moment). The pass starts again from the manifest. It failed the run with a bare
    "No such file or directory: '00000008.jsonl'" instead (once in CI: three writers logging
    images while sync ran again and again)."""
    store, remote = tmp_path / "store", str(tmp_path / "remote")
    monkeypatch.setenv("LOCALTRACK_ROTATE_BYTES", "20000")
    monkeypatch.setattr(_sealer, "request", lambda *a, **k: None)  # sealing when the test says
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(20):
        run.log({"x": float(i)})
    localtrack.sync(remote, dir=store)  # log 0's first rows: a small chunk
    for i in range(20, 2000):
        run.log({"x": float(i)})  # log 0 fills and is closed; newer logs follow
    rdir = store / "p" / "runs" / "r"
    assert _segments.wal_seqs(rdir)[:2] == [0, 1]
    real, sealed = _upload._read_range, []

    def read_range(path, under, start, end=None, **ctx):
        if end is not None and path.name == "00000000.jsonl" and not sealed:  # the merge's read
            with _sealer.hold(rdir):
                _sealer.seal_closed(rdir, 0)
            sealed.append(path)
        return real(path, under, start, end, **ctx)

    monkeypatch.setattr(_upload, "_read_range", read_range)
    localtrack.sync(remote, dir=store)
    assert sealed and 0 not in _segments.wal_seqs(rdir)
    run.finish()
    localtrack.sync(remote, dir=store)
    there = localtrack.Api(remote).run("p/r").history_table(["x"])
    assert same_table(there, localtrack.Api(store).run("p/r").history_table(["x"]))
    assert there.column("_step").to_pylist() == list(range(2000))
