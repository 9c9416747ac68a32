"""Every foreign exception is mapped at the boundary (httpx's rule; STYLE.md rules 3-4).

The public surface is enumerated, not listed by hand: ``localtrack.__all__``, the public
members of Api, ApiRun, Run and the Sweep that Api.sweep() returns, and the subcommands
``python -m localtrack --help`` prints. Each must have a case below, or
test_every_public_name_has_a_case fails naming it. Each case is then called against hostile
stores built on real disk (we run as root, so no chmod: a file where a folder should be,
links that loop or dangle, garbage and truncated files, JSON of the wrong type, a name too
long, a name that is not UTF-8, a full disk). Whatever a call raises must be a
LocaltrackError that names the store, the run or the file, never a raw OSError, KeyError,
ValueError, TypeError, IndexError, pyarrow or orjson error; the CLI turns it into one
``error:`` line and exit status 2, never a traceback. Escapes still open in modules owned
elsewhere are listed in KNOWN by the module they come out of; a listed one that stops
escaping fails the test, so the list only shrinks.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import traceback
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import localtrack
from localtrack import _artifacts, _cli
from localtrack._codec import dumps, loads
from localtrack._frames import frame
from localtrack.errors import LocaltrackError

from .helpers import run_script, settle

PROJECT, RUN, ART = "p", "r", "model"
SWEEP_CONFIG = {"method": "grid", "metric": {"name": "loss", "goal": "minimize"},
                "parameters": {"lr": {"values": [0.1]}}}


# -- one real store: a sealed segment, an unsealed log, a sweep with one finished job ---------


def _job() -> None:
    run = localtrack.init()
    run.log({"loss": 0.5})
    run.finish()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    store = tmp_path_factory.mktemp("template") / "store"
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("LOCALTRACK_")]:
            mp.delenv(key)
        mp.setenv("LOCALTRACK_SEAL_MIN_BYTES", "0")
        run = localtrack.init(project=PROJECT, id=RUN, dir=store, config={"lr": 0.1})
        for i in range(10):
            run.log({"x": i, **({"img": localtrack.Image(np.zeros((4, 4), np.uint8))} if i == 0
                                else {})})
        run.summary["best"] = 1.0
        run.finish()
        settle(store)
        mp.setenv("LOCALTRACK_SEAL_MIN_BYTES", str(1 << 40))
        run = localtrack.init(project=PROJECT, id=RUN, dir=store, resume="must")
        for i in range(3):
            run.log({"x": 10 + i, "s": "text"})
        run.log({"img": [localtrack.Image(np.ones((2, 2), np.uint8))],
                 "t": localtrack.Table(columns=["i"], data=[[localtrack.Image(np.ones((2, 2)))]]),
                 "c": localtrack.plot.line(localtrack.Table(columns=["a"], data=[[1]]), "a", "a")})
        run.finish()
        sweep_id = localtrack.sweep(SWEEP_CONFIG, project=PROJECT, dir=store)
        localtrack.agent(sweep_id, function=_job, count=1, project=PROJECT, dir=store)
        settle(store)
        _artifacts.log(localtrack.Artifact(ART, "model").add_file(store / PROJECT / "runs" / RUN
                                                                  / "run.json"),
                       store, PROJECT, ["best"], f"{PROJECT}/{RUN}").wait()
    rdir = store / PROJECT / "runs" / RUN
    assert (rdir / "segments" / "00000000.parquet").is_file() and (rdir / "wal" / "00000001.jsonl").is_file()
    assert (rdir / "segments" / "00000000.blob").is_file() and (rdir / "wal" / "00000001.blob").is_file()
    return store, sweep_id


# -- hostile stores: each damages a fresh copy and returns the --dir to pass ------------------

Damage = Callable[[Path], Path]


def _run(store: Path) -> Path:
    return store / PROJECT / "runs" / RUN


def _replace(rel: str, data: bytes | None = None, *, dir_: bool = False) -> Damage:
    """The file (or folder) ``rel`` of run p/r replaced by ``data``, or by a folder."""
    def damage(store: Path) -> Path:
        path = _run(store) / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
        if dir_:
            path.mkdir()
            (path / "x").write_bytes(b"not a chunk")
        else:
            assert data is not None
            path.write_bytes(data)
        return store
    return damage


def _truncate(rel: str, keep: float) -> Damage:
    def damage(store: Path) -> Path:
        path = _run(store) / rel
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * keep)])
        return store
    return damage


def _link(rel: str, target: str) -> Damage:
    def damage(store: Path) -> Path:
        path = store / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
        path.symlink_to(target)
        return store
    return damage


def _store_missing(store: Path) -> Path:
    shutil.rmtree(store)
    return store


def _store_is_a_file(store: Path) -> Path:
    shutil.rmtree(store)
    store.write_text("not a store")
    return store


def _store_dangling_link(store: Path) -> Path:
    shutil.rmtree(store)
    store.symlink_to(store.parent / "gone")
    return store


def _store_link_loop(store: Path) -> Path:
    shutil.rmtree(store)
    store.symlink_to(store.name)
    return store


def _store_name_too_long(store: Path) -> Path:
    return store / ("n" * 300)


def _store_not_utf8(store: Path) -> Path:
    """The whole store moved under a folder whose name is not UTF-8 (it still works)."""
    target = Path(os.fsdecode(bytes(store.parent) + b"/st\xffore"))
    store.rename(target)
    return target


def _runs_is_a_file(store: Path) -> Path:
    shutil.rmtree(store / PROJECT / "runs")
    (store / PROJECT / "runs").write_text("x")
    return store


def _sweep_file(name: str, data: bytes) -> Damage:
    def damage(store: Path) -> Path:
        (next((store / PROJECT / "sweeps").iterdir()) / name).write_bytes(data)
        return store
    return damage


def _framed(rel: str, *records: dict[str, Any]) -> Damage:
    """``rel`` replaced by framed records that pass their checksums but hold wrong types."""
    def damage(store: Path) -> Path:
        (_run(store) / rel).write_bytes(b"".join(frame(r) for r in records))
        (_run(store) / "wal" / "durable").unlink()  # no watermark: every byte counts as synced
        return store
    return damage


def _parquet(table: dict[str, list[Any]]) -> Damage:
    """The sealed segment replaced by a valid Parquet file of the wrong shape."""
    def damage(store: Path) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(table), _run(store) / "segments" / "00000000.parquet")
        return store
    return damage


def _segment_gone_and_unnamed(store: Path) -> Path:
    _manifest(segments=[{"file": "00000000.parquet", "rows": 10, "seq": 0}])(store)
    (_run(store) / "segments" / "00000000.parquet").unlink()
    return store


def _manifest(**changes: Any) -> Damage:
    def damage(store: Path) -> Path:
        path = _run(store) / "manifest.json"
        path.write_bytes(dumps({**loads(path.read_bytes()), **changes}))
        return store
    return damage


def _artifact(rel: str, data: bytes | None = None, *, dir_: bool = False) -> Damage:
    """The file (or folder) ``rel`` of the template's artifact store replaced."""
    def damage(store: Path) -> Path:
        path = store / PROJECT / "artifacts" / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        if dir_:
            path.mkdir()
        else:
            path.write_bytes(data or b"")
        return store
    return damage


HOSTILE: list[Any] = [
    pytest.param(_artifact(f"names/{ART}/v0.json", b"{garbage"), id="artifact-manifest-garbage"),
    pytest.param(_artifact(f"names/{ART}/v0.json", b'{"format": 1, "name": "model", "version": 0, '
                           b'"type": "model", "files": {"../x": 1}, "references": {}}'),
                 id="artifact-manifest-escapes"),
    pytest.param(_artifact(f"names/{ART}/v0.json", dir_=True), id="artifact-manifest-a-directory"),
    pytest.param(_artifact(f"names/{ART}/aliases/best.json", b"[]"), id="artifact-alias-a-list"),
    pytest.param(_artifact("blobs", b"x"), id="artifact-blobs-a-file"),
    pytest.param(_artifact("names", b"x"), id="artifact-names-a-file"),
    pytest.param(_store_missing, id="store-missing"),
    pytest.param(_store_is_a_file, id="store-is-a-file"),
    pytest.param(_store_dangling_link, id="store-dangling-link"),
    pytest.param(_store_link_loop, id="store-symlink-loop"),
    pytest.param(_store_name_too_long, id="store-name-too-long"),
    pytest.param(_store_not_utf8, id="store-name-not-utf8"),
    pytest.param(_link(f"{PROJECT}/runs", "runs"), id="runs-symlink-loop"),
    pytest.param(_runs_is_a_file, id="runs-is-a-file"),
    pytest.param(_link(f"{PROJECT}/runs/{RUN}", "nowhere"), id="run-dangling-link"),
    pytest.param(_replace("run.json", b"[1, 2]"), id="run-json-a-list"),
    pytest.param(_replace("run.json", b'"r"'), id="run-json-a-string"),
    pytest.param(_replace("run.json", b"\xff\xfe{"), id="run-json-not-utf8"),
    pytest.param(_replace("config.json", b"7"), id="config-json-a-number"),
    pytest.param(_replace("summary.json", b"{\"best\": "), id="summary-json-truncated"),
    pytest.param(_replace("summary.json", dir_=True), id="summary-json-a-directory"),
    pytest.param(_replace("events.jsonl", dir_=True), id="events-a-directory"),
    pytest.param(_replace("events.jsonl", b"\x00garbage\n"), id="events-garbage"),
    pytest.param(_truncate("manifest.json", 0.5), id="manifest-truncated"),
    pytest.param(_replace("manifest.json", b"[]"), id="manifest-a-list"),
    pytest.param(_replace("manifest.json", dir_=True), id="manifest-a-directory"),
    pytest.param(_manifest(segments=[{"file": "00000000.parquet", "rows": 10, "seq": 0}]),
                 id="manifest-segment-without-steps"),
    pytest.param(_manifest(segments=["00000000.parquet"]), id="manifest-segment-a-string"),
    pytest.param(_manifest(last={"x": {"$f": "bogus"}}), id="manifest-last-bad-tag"),
    pytest.param(_manifest(last={"x": {"$h": {"counts": [1]}}}), id="manifest-last-bad-histogram"),
    pytest.param(_segment_gone_and_unnamed, id="manifest-missing-segment-without-steps"),
    pytest.param(_truncate("segments/00000000.parquet", 0.5), id="segment-truncated"),
    pytest.param(_replace("segments/00000000.parquet", b"PAR1garbagePAR1"), id="segment-garbage"),
    pytest.param(_replace("segments/00000000.parquet", dir_=True), id="segment-a-directory"),
    pytest.param(_link(f"{PROJECT}/runs/{RUN}/segments/00000000.parquet", "00000000.parquet"),
                 id="segment-symlink-loop"),
    pytest.param(_replace("segments", b"x"), id="segments-a-file"),
    pytest.param(_parquet({"_step": ["a", "b"], "_timestamp": [1.0, 2.0], "x": [1, 2]}),
                 id="segment-step-strings"),
    pytest.param(_parquet({"y": [1, 2]}), id="segment-without-step"),
    pytest.param(_framed("wal/00000001.jsonl", {"_step": "x", "_timestamp": 1.0, "x": 1}),
                 id="log-step-a-string"),
    pytest.param(_framed("wal/00000001.jsonl", {"_step": None, "_timestamp": None, "x": 1}),
                 id="log-step-null"),
    pytest.param(_framed("wal/00000001.jsonl", {"_step": 20, "_timestamp": "noon", "x": [1]}),
                 id="log-timestamp-a-string"),
    pytest.param(_framed("wal/00000001.jsonl", {"_step": 20, "_timestamp": 1.0,
                                                "x": {"$h": {"counts": ["a"], "edges": [0, 1]}}}),
                 id="log-bad-histogram"),
    pytest.param(_framed("events.jsonl", {"event": "finished", "time": "noon", "step": "x",
                                          "exit_code": "0"}), id="events-of-wrong-types"),
    pytest.param(_framed("events.jsonl", {"event": ["finished"], "cluster": 5}),
                 id="events-event-a-list"),
    pytest.param(_replace("wal", b"x"), id="wal-a-file"),
    pytest.param(_replace("wal/00000001.jsonl", dir_=True), id="log-a-directory"),
    pytest.param(_replace("wal/00000001.jsonl", b"\xff" * 64 + b"\n"), id="log-garbage"),
    pytest.param(_truncate("wal/00000001.jsonl", 0.5), id="log-truncated"),
    pytest.param(_link(f"{PROJECT}/runs/{RUN}/wal/00000001.jsonl", "00000001.jsonl"),
                 id="log-symlink-loop"),
    pytest.param(_replace("wal/durable", b"\xff" * 300), id="watermark-garbage"),
    pytest.param(_replace("segments/00000000.blob", b"garbage"), id="blob-sealed-garbage"),
    pytest.param(_truncate("wal/00000001.blob", 0.5), id="blob-truncated"),
    pytest.param(_replace("wal/00000001.blob", dir_=True), id="blob-a-directory"),
    pytest.param(_link(f"{PROJECT}/runs/{RUN}/wal/00000001.blob", "00000001.blob"),
                 id="blob-symlink-loop"),
    pytest.param(_framed("wal/00000001.jsonl", {"_step": 20, "_timestamp": 1.0,
                                                "img": {"$m": {"type": "image", "log": "x"}}}),
                 id="log-media-ref-of-wrong-types"),
    pytest.param(_framed("wal/00000001.jsonl", {"_step": 20, "_timestamp": 1.0, "img": {"$m": {
        "type": "image", "fmt": "raw", "log": 1, "off": 0, "len": 4, "crc": 1155390570,
        "w": 99, "h": 99, "c": 7}}}), id="log-media-ref-bad-shape"),
    pytest.param(_sweep_file("state.json", b"{\"jobs\": "), id="sweep-state-truncated"),
    pytest.param(_sweep_file("state.json", b"[]"), id="sweep-state-a-list"),
    pytest.param(_sweep_file("sweep.json", b"{}"), id="sweep-json-empty-object"),
    pytest.param(_sweep_file("sweep.json", b"\x00"), id="sweep-json-garbage"),
]



# -- the cases: one per public name -----------------------------------------------------------


class Case:
    """What a case gets: a store copy (as passed to dir=/--dir), the sweep id, a remote to sync to."""

    def __init__(self, store: Path, sweep_id: str, remote: Path) -> None:
        self.store, self.sweep_id, self.remote = store, sweep_id, remote

    def api(self) -> localtrack.Api:
        return localtrack.Api(self.store)

    def run(self) -> localtrack.ApiRun:
        return self.api().run(f"{PROJECT}/{RUN}")

    def sweep(self) -> Any:
        return self.api().sweep(f"{PROJECT}/{self.sweep_id}")

    def resumed(self) -> localtrack.Run:
        return localtrack.init(project=PROJECT, id=RUN, dir=self.store, resume="allow")


def _log(c: Case) -> None:
    c.resumed()
    localtrack.log({"x": 99})


def _log_media(name: str) -> Call:
    """Log one value of the media type ``name`` to the resumed run (its blob log is written)."""
    values = {"Audio": lambda: localtrack.Audio(np.zeros(8), sample_rate=8000),
              "Html": lambda: localtrack.Html("<b>x</b>"),
              "Image": lambda: localtrack.Image(np.zeros((3, 3, 3))),
              "Molecule": lambda: localtrack.Molecule("m.pdb"),  # refused by log()
              "Object3D": lambda: localtrack.Object3D(np.zeros((3, 3))),
              "Table": lambda: localtrack.Table(columns=["a"], data=[[1]]),
              "Video": lambda: localtrack.Video(np.zeros((2, 3, 4, 4), np.uint8)),
              "plot": lambda: localtrack.plot.pr_curve([0, 1], [[0.8, 0.2], [0.3, 0.7]]),
              "plot_table": lambda: localtrack.plot_table(
                  "wandb/line/v0", localtrack.Table(columns=["a"], data=[[1]]), {"x": "a", "y": "a"})}

    def call(c: Case) -> None:
        c.resumed()
        localtrack.log({"img": values[name]()})
    return call


def _finish(c: Case) -> None:
    c.resumed()
    localtrack.finish()


def _on_active(call: Callable[[], Any]) -> Call:
    """A module-level call that acts on the active run: on the hostile store's run."""
    def case(c: Case) -> Any:
        c.resumed()
        return call()
    return case


def _restore(c: Case) -> Any:
    with localtrack.restore("a.txt", run_path=f"{PROJECT}/{RUN}", dir=c.store) as f:
        return f.read()


class _Model:
    """Stands for a torch module (the boundary must hold without torch too)."""

    def named_parameters(self) -> list[Any]:
        return []

    def register_forward_hook(self, hook: Any) -> Any:
        return self

    def remove(self) -> None:
        pass


Call = Callable[[Any], Any]

# localtrack.__all__: each name called the way a user calls it. Writers get a store of their own.
TOP_LEVEL: dict[str, Call] = {
    "Api": lambda c: c.api(),
    "ApiRun": lambda c: c.run(),
    "Artifact": lambda c: localtrack.Artifact(ART, "model").add_dir(c.store / PROJECT),
    "Run": lambda c: c.resumed(),
    "agent": lambda c: localtrack.agent(c.sweep_id, function=_job, count=1, project=PROJECT,
                                        dir=c.store),
    "alert": _on_active(lambda: localtrack.alert("t", "x", level="WARN")),
    "define_metric": _on_active(lambda: localtrack.define_metric("x", summary="min")),
    "mark_preempting": _on_active(lambda: localtrack.mark_preempting()),
    "restore": _restore,
    "save": _on_active(lambda: localtrack.save("*.txt", policy="now")),
    "watch": _on_active(lambda: localtrack.watch(_Model(), log=None)),
    "unwatch": _on_active(lambda: localtrack.unwatch()),
    "finish": _finish,
    "init": lambda c: localtrack.init(project=PROJECT, dir=c.store),
    "log": _log,
    "log_artifact": lambda c: (c.resumed(), localtrack.log_artifact(
        c.store / PROJECT / "runs" / RUN / "run.json", name=ART, type="model").wait()),
    "use_artifact": lambda c: (c.resumed(), localtrack.use_artifact(f"{ART}:latest").download(
        root=c.store.parent / "download")),
    **{name: _log_media(name) for name in ("Audio", "Html", "Image", "Molecule", "Object3D",
                                           "Table", "Video", "plot", "plot_table")},
    "sweep": lambda c: localtrack.sweep(SWEEP_CONFIG, project=PROJECT, dir=c.store),
    "sync": lambda c: localtrack.sync(c.remote, dir=c.store),
}
READ_ONLY = {"Api", "ApiRun"}
NOT_CALLED = {"LocaltrackError": "the error root itself", "__version__": "a string",
              "AlertLevel": "an enum", "login": "a no-op: nothing to log in to",
              "setup": "a no-op", "teardown": "a no-op",
              "Settings": "a record of init()'s settings: no I/O of its own",
              "Histogram": "a value made in memory: no I/O of its own"}


def _get(name: str) -> Call:
    return lambda obj: getattr(obj, name)


API: dict[str, Call] = {
    "artifact": lambda api: api.artifact(f"{PROJECT}/{ART}:best").download(
        root=Path(api.root).parent / "download"),
    "artifacts": lambda api: [a.files() for a in api.artifacts(type="model")],
    "projects": lambda api: api.projects(),
    "run": lambda api: api.run(f"{PROJECT}/{RUN}"),
    "query": lambda api: api.query("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM "
                                   "history), (SELECT count(*) FROM events)"),
    "runs": lambda api: api.runs(PROJECT, filters={"$or": [{"summary_metrics.x": {"$gte": 0}},
                                                           {"config.lr": {"$exists": True}}]},
                                 order="-summary_metrics.x"),
    "sweep": lambda api: api.sweep(f"{PROJECT}/{_sweep_id(api.root)}"),
}
APIRUN: dict[str, Call] = {
    **{n: _get(n) for n in ("config", "created_at", "dir", "labels", "lastHistoryStep", "last_step",
                            "metrics", "path", "rewinds", "summary", "updated", "url")},
    "files": lambda r: r.files(),
    "file": lambda r: r.file("a.txt"),
    "history": lambda r: r.history(samples=3, keys=["x"], pandas=False),
    "history_table": lambda r: r.history_table(include_rewound=True),
    "scan_history": lambda r: list(r.scan_history(page_size=2)),
    "history_df": lambda r: r.history_df(),
    "histograms": lambda r: r.histograms("x"),
    "media": lambda r: (r.media("img"), r.media("t", pandas=True), r.media("c")),
}
RUN_ATTRIBUTES = {"summary", "name_set"}  # not among the class's public members (an instance
# attribute; setting run.name, which rewrites run.json)
RUN_MEMBERS: dict[str, Call] = {
    **{n: _get(n) for n in ("dir", "path", "state", "name", "tags", "group", "notes", "job_type",
                            "entity", "sweep_id", "url")},
    "project_name": lambda r: r.project_name(),
    "define_metric": lambda r: r.define_metric("x", summary="min"),
    "alert": lambda r: r.alert("t", "x"),
    "save": lambda r: r.save("*.txt"),
    "watch": lambda r: r.watch(_Model(), log="all"),
    "unwatch": lambda r: r.unwatch(),
    "log": lambda r: r.log({"x": 100}),
    "log_artifact": lambda r: r.log_artifact(Path(r.dir) / "run.json", name=ART,
                                             type="model").wait(),  # the commit's errors too
    "use_artifact": lambda r: r.use_artifact(f"{ART}:latest").download(
        root=Path(r.dir).parents[3] / "download"),
    "mark_preempting": lambda r: r.mark_preempting(),
    "rewind": lambda r: r.rewind(0),
    "name_set": lambda r: setattr(r, "name", "renamed"),
    "summary": lambda r: dict(r.summary),  # read back from the files (an instance attribute)
    "finish": lambda r: r.finish(),
}
SWEEP: dict[str, Call] = {
    "runs": _get("runs"),
    "best_run": lambda s: s.best_run(),
    "counts": lambda s: s.counts(),
}


def _sweep_id(root: Any) -> str:
    """The template's one sweep (the id is a folder name; a damaged store may have none)."""
    try:
        return next(p.name for p in (Path(root) / PROJECT / "sweeps").iterdir())
    except (OSError, StopIteration):
        return "nosweep"


def _out(c: Case) -> str:
    return str(c.remote.parent / "plot.svg")


# The subcommands, each against the store; ``writes`` ones get a store of their own.
CLI: dict[str, tuple[bool, Callable[[Case], list[str]]]] = {
    "agent": (True, lambda c: ["agent", f"{PROJECT}/{c.sweep_id}", "--count", "1"]),
    "doctor": (True, lambda c: ["doctor", "--fix"]),
    "gc": (True, lambda c: ["gc", "--older-than", "0s"]),
    "plot": (False, lambda c: ["plot", f"{PROJECT}/{RUN}", "--key", "x", "--out", _out(c)]),
    "query": (False, lambda c: ["query", "SELECT count(*) FROM runs, history, events"]),
    "runs": (False, lambda c: ["runs"]),
    "show": (False, lambda c: ["show", f"{PROJECT}/{RUN}"]),
    "sweep": (False, lambda c: ["sweep", "--status", f"{PROJECT}/{c.sweep_id}"]),
    "sync": (True, lambda c: ["sync", "--to", str(c.remote)]),
}
CLI_ELSEWHERE = {
    "demo": "not run: it trains two children for seconds; test_cli covers a store that is a "
            "file and a child that fails",
    "ui": "serves until stopped: see test_cli_ui_serves_or_refuses_without_a_traceback",
    "wandb-shim": "reads no store (prints a folder): tests/test_wandb_shim.py",
}


def _public(cls: type) -> set[str]:
    """The public methods and properties of a class (plain attributes are read as it is built)."""
    return {n for n in dir(cls) if not n.startswith("_")}


def cli_commands() -> set[str]:
    """The subcommands, as ``python -m localtrack --help`` lists them."""
    res = subprocess.run([sys.executable, "-m", "localtrack", "--help"], capture_output=True,
                         text=True, timeout=60, check=True)
    match = re.search(r"\{([a-z,-]+)\}", res.stdout)
    assert match, res.stdout
    return set(match.group(1).split(","))


def test_every_public_name_has_a_case(template: tuple[Path, str], tmp_path: Path) -> None:
    """A new public name fails here until it has a case above, and so meets every hostile store.

    Methods and properties are enumerated from the classes; plain attributes are read while
    the object is built, so the case that builds it covers them.
    """
    src, sweep_id = template
    store = tmp_path / "store"
    shutil.copytree(src, store, symlinks=True)
    c = Case(store, sweep_id, tmp_path / "remote")
    assert set(localtrack.__all__) == set(TOP_LEVEL) | set(NOT_CALLED)
    assert _public(localtrack.Api) == set(API)
    assert _public(localtrack.ApiRun) == set(APIRUN)
    assert _public(type(c.sweep())) == set(SWEEP)
    run = c.resumed()
    try:
        assert _public(localtrack.Run) == set(RUN_MEMBERS) - RUN_ATTRIBUTES
    finally:
        run.finish()
    assert cli_commands() == set(CLI) | set(CLI_ELSEWHERE)


# -- the check --------------------------------------------------------------------------------


def _names_it(text: str, c: Case) -> bool:
    """Whether a message names the store, the run, the sweep or the remote (so a user can act)."""
    store = str(c.store)
    return any(w in text for w in (store, repr(store)[1:-1], f"'{RUN}'", f"{PROJECT}/{RUN}",
                                   c.sweep_id, str(c.remote)))


def _where(exc: BaseException) -> str:
    """The innermost localtrack module an exception came out of: where it should be mapped."""
    frames = [f.filename for f in traceback.extract_tb(exc.__traceback__)]
    mine = [f.split("/localtrack/", 1)[1] for f in frames if "/localtrack/" in f]
    return mine[-1] if mine else "?"


class Checker:
    """Calls cases and collects every way one fails the boundary rule, with the module to blame."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []  # (module, what happened)

    def call(self, label: str, fn: Callable[[], Any], c: Case) -> Any:
        """The result, or None when ``fn`` raised (a mapped error is fine, anything else is not)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # "dropped a torn tail" is no error
                return fn()
        except LocaltrackError as exc:
            if not _names_it(str(exc), c):
                self.problems.append((_where(exc), f"{label}: {type(exc).__name__} names no store, "
                                      f"run or file: {exc}"))
        except Exception as exc:  # noqa: BLE001 - the point: whatever escapes unmapped
            self.problems.append((_where(exc), f"{label}: raw {type(exc).__module__}."
                                  f"{type(exc).__qualname__} from {_where(exc)}: {exc}"))
        return None

    def walk(self, label: str, obj: Any, cases: dict[str, Call], c: Case) -> None:
        if obj is not None:
            for name, case in cases.items():
                self.call(f"{label}.{name}", lambda case=case: case(obj), c)

    def cli(self, argv: list[str], c: Case) -> None:
        """``localtrack ARGV --dir STORE`` in this process: an exception out of main() is the
        traceback a user would see; exit 2 must come with an ``error:`` line naming the store."""
        argv = [*argv, "--dir", str(c.store)]
        label = f"localtrack {argv[0]}"
        err = io.StringIO()
        level = logging.getLogger("localtrack").level
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                code = _cli.main(argv)
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: argparse must take these
            self.problems.append((_where(exc), f"{label}: traceback, {type(exc).__module__}."
                                  f"{type(exc).__qualname__} from {_where(exc)}: {exc}"))
            return
        finally:
            logging.getLogger("localtrack").setLevel(level)
        text = err.getvalue()
        if code == 2:
            lines = [line for line in text.splitlines() if line.startswith("error: ")]
            if not lines:
                self.problems.append(("_cli.py", f"{label}: exit 2 without an 'error:' line: {text!r}"))
            elif not _names_it(lines[0], c):
                self.problems.append(("_cli.py", f"{label}: the error names no store or run: {lines[0]}"))
        elif code not in (0, 1):
            self.problems.append(("_cli.py", f"{label}: exit {code}: {text!r}"))


def _finish_all() -> None:
    from localtrack import _session

    for run in list(_session._active):
        with contextlib.suppress(LocaltrackError):
            run.finish()


# Escapes still to be mapped in modules this test's author did not own (each was reported): per
# hostile store, the module a raw exception comes out of, and what escapes. An entry that no
# longer fails fails the test, so the list shrinks as they are fixed.
KNOWN: dict[str, dict[str, str]] = {}  # none left (2026-11-30)


@pytest.mark.seal_may_fail
@pytest.mark.parametrize("damage", HOSTILE)
def test_no_foreign_exception_escapes(template: tuple[Path, str], tmp_path: Path,
                                      damage: Damage, request: pytest.FixtureRequest) -> None:
    src, sweep_id = template
    copies = iter(range(1000))

    def fresh() -> Case:
        """A damaged copy of the template of its own (writers change what they touch)."""
        n = next(copies)
        store = tmp_path / f"s{n}" / "store"
        shutil.copytree(src, store, symlinks=True)
        return Case(damage(store), sweep_id, tmp_path / f"s{n}" / "remote")

    check = Checker()
    c = fresh()  # the readers share one copy
    api = check.call("Api", lambda: TOP_LEVEL["Api"](c), c)
    check.call("ApiRun", lambda: TOP_LEVEL["ApiRun"](c), c)
    check.walk("Api", api, API, c)
    check.walk("ApiRun", check.call("Api.run", lambda: c.run(), c), APIRUN, c)
    for i, run in enumerate(check.call("Api.runs", lambda: c.api().runs(), c) or []):
        check.walk(f"Api.runs()[{i}]", run, APIRUN, c)
    check.walk("Sweep", check.call("Api.sweep", lambda: c.sweep(), c), SWEEP, c)
    for writes, argv in CLI.values():
        if not writes:
            check.cli(argv(c), c)
    for name, case in TOP_LEVEL.items():
        if name not in READ_ONLY:
            w = fresh()
            check.call(name, lambda case=case, w=w: case(w), w)
            _finish_all()
    w = fresh()
    check.walk("Run", check.call("init(resume='allow')", lambda: w.resumed(), w), RUN_MEMBERS, w)
    _finish_all()
    for writes, argv in CLI.values():
        if writes:
            w = fresh()
            check.cli(argv(w), w)
    known = KNOWN.get(request.node.callspec.id, {})
    left = [text for where, text in check.problems if where not in known]
    assert not left, "\n".join(left)
    fixed = set(known) - {where for where, _ in check.problems}
    assert not fixed, f"fixed in {fixed}? then drop them from KNOWN"


# -- the real command line, a full disk -------------------------------------------------------


@pytest.mark.parametrize("damage, argv", [
    pytest.param(_truncate("manifest.json", 0.5), ["show", f"{PROJECT}/{RUN}"], id="show-manifest"),
    pytest.param(_replace("segments/00000000.parquet", b"PAR1garbagePAR1"),
                 ["plot", f"{PROJECT}/{RUN}", "--key", "x", "--out", "x.svg"], id="plot-segment"),
    pytest.param(_store_is_a_file, ["doctor"], id="doctor-store-a-file"),
])
def test_cli_prints_one_error_line_and_no_traceback(template: tuple[Path, str], tmp_path: Path,
                                                   damage: Damage, argv: list[str]) -> None:
    store = tmp_path / "store"
    shutil.copytree(template[0], store, symlinks=True)
    store = damage(store)
    res = subprocess.run([sys.executable, "-m", "localtrack", *argv, "--dir", str(store)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 2, res
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and str(store) in lines[0], res.stderr


@pytest.mark.parametrize("damage", [pytest.param(_store_is_a_file, id="store-is-a-file"),
                                    pytest.param(_truncate("manifest.json", 0.5), id="manifest")])
def test_cli_ui_serves_or_refuses_without_a_traceback(template: tuple[Path, str], tmp_path: Path,
                                                      damage: Damage) -> None:
    store = tmp_path / "store"
    shutil.copytree(template[0], store, symlinks=True)
    store = damage(store)
    proc = subprocess.Popen([sys.executable, "-m", "localtrack", "ui", "--port", "0", "--dir",
                             str(store)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # "serving ..." or nothing (it exited)
        if "serving" in first:
            url = first.split(" at ")[1].split()[0]
            for path in ("/api/projects", f"/api/runs?project={PROJECT}"):
                try:
                    with urllib.request.urlopen(f"{url}{path}", timeout=30) as resp:
                        resp.read()
                except urllib.error.HTTPError as exc:  # a mapped error, as JSON naming the file
                    assert str(store) in loads(exc.read())["error"]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err


FULL_DISK = """
import resource, sys, localtrack
from localtrack.errors import LocaltrackError
store, remote = sys.argv[1], sys.argv[2]
run = localtrack.init(project="p", id="full", dir=store)
# RLIMIT_FSIZE stands in for a full disk (see test_resources): writes fail with EFBIG.
resource.setrlimit(resource.RLIMIT_FSIZE, (16, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
def attempt(name, fn):
    try:
        fn()
        print(name, "ok")
    except LocaltrackError as exc:
        print(name, "mapped", type(exc).__name__)
    except Exception as exc:
        print(name, "RAW", type(exc).__module__, type(exc).__qualname__, exc)
def fill():
    for i in range(100_000):
        run.log({"x": i, "pad": "y" * 97})
attempt("log", fill)
attempt("finish", run.finish)
attempt("init", lambda: localtrack.init(project="p", dir=store))
attempt("sweep", lambda: localtrack.sweep({"method": "grid", "parameters": {"a": {"values": [1]}}},
                                         project="p", dir=store))
attempt("sync", lambda: localtrack.sync(remote, dir=store))
attempt("doctor", lambda: __import__("localtrack._cli").__dict__ and
        localtrack._cli.main(["doctor", "--fix", "--dir", store]))
"""


@pytest.mark.seal_may_fail
def test_a_full_disk_is_mapped_everywhere(tmp_path: Path) -> None:
    res = run_script(FULL_DISK, str(tmp_path / "store"), str(tmp_path / "remote"), timeout=120)
    assert res.returncode == 0, res.stderr
    results = dict(line.split(" ", 1) for line in res.stdout.splitlines()
                   if line.split(" ", 1)[0] in ("log", "finish", "init", "sweep", "sync", "doctor"))
    assert set(results) == {"log", "finish", "init", "sweep", "sync", "doctor"}, res.stdout
    assert not [line for line in res.stdout.splitlines() if " RAW " in line], res.stdout
    assert results["log"] == "mapped StorageError", res.stdout
