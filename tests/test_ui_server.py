"""`localtrack ui` over HTTP: the JSON API, binding rules, headers, downsampling, a big store.

The server runs as a real `localtrack ui` subprocess on a free loopback port over
runs made through localtrack.init/log/finish; the browser tests are in test_ui_browser.py.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import math
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import orjson
import pyarrow as pa
import pytest

import localtrack
from localtrack._ui import make_server
from localtrack._ui._assets import STATIC_DIR, plotly_js
from localtrack._ui._downsample import series
from localtrack.errors import UsageError

from . import ui_helpers
from .ui_helpers import EVIL_NAME, UIProcess, build_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ui") / "store"
    build_store(root)
    return root


ui = ui_helpers.ui  # the dashboard over this module's store


def get(url: str, route: str, headers: dict[str, str] | None = None, **params: object):
    """(status, headers, body bytes) of one GET to the server at ``url``."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        query = f"?{urlencode(params)}" if params else ""
        conn.request("GET", route + query, headers=headers or {})
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


def get_json(url: str, route: str, **params: object):
    status, _, body = get(url, route, **params)
    assert status == 200, body
    return json.loads(body)


# -- the JSON API ----------------------------------------------------------------------------

def test_projects_and_runs_list(ui):
    projects = get_json(ui.url, "/api/projects")
    assert [p["name"] for p in projects["projects"]] == ["cifar10", "mnist"]
    runs = {r["id"]: r for r in get_json(ui.url, "/api/runs", project="mnist")["runs"]}
    assert {r["state"] for r in runs.values()} >= {"finished", "failed", "crashed"}
    base = runs["r0-baseline"]
    assert base["name"] == "baseline" and base["steps"] == 40 and base["tags"] == ["baseline"]
    assert base["group"] == "sgd" and base["host"] == socket.gethostname()
    assert base["config"] == {"lr": 0.1, "batch": 64, "model.depth": 4, "model.act": "relu"}
    assert base["summary"]["best_acc"] == 0.9 and "val/loss" in base["metrics"]
    assert base["duration"] >= 0 and base["updated"] >= base["created"]
    assert runs["crashed"]["state"] == "crashed" and runs["crashed"]["steps"] == 25
    assert runs["resumed"]["steps"] == 20


def test_run_page_data(ui):
    run = get_json(ui.url, "/api/run", path="mnist/resumed")
    assert [e["event"] for e in run["events"]] == ["started", "resumed", "finished"]
    assert run["events"][1]["step"] == 10
    names = {f["name"] for f in run["files"]}
    assert {"run.json", "config.json", "events.jsonl"} <= names
    assert run["config"] == {"lr": 0.1}
    status, headers, body = get(ui.url, "/api/file", path="mnist/resumed", name="config.json")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert json.loads(body) == {"lr": 0.1}


@pytest.mark.parametrize("name", [
    pytest.param("../../locks/resumed.lock", id="dot-dot"),
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("wal/../../../../../etc/passwd", id="nested-dot-dot"),
    pytest.param("nope.json", id="missing"),
])
def test_file_route_stays_inside_the_run(ui, name):
    status, _, body = get(ui.url, "/api/file", path="mnist/resumed", name=name)
    assert status in (400, 404), body
    assert b"root:" not in body


def test_history_is_downsampled_on_the_server(ui):
    data = get_json(ui.url, "/api/history", path="mnist/r0-baseline", keys="loss,acc,nope", points=500)
    loss = data["series"]["loss"]
    assert loss["x"] == list(range(40)) and not loss["sampled"] and len(loss["y"]) == 40
    assert data["series"]["nope"]["x"] == []
    windowed = get_json(ui.url, "/api/history", path="mnist/r0-baseline", keys="loss", xmin=10, xmax=19)
    assert windowed["series"]["loss"]["x"] == list(range(10, 20))
    timed = get_json(ui.url, "/api/history", path="mnist/r0-baseline", keys="loss", x="time")
    xs = timed["series"]["loss"]["x"]
    assert len(xs) == 40 and xs == sorted(xs) and xs[0] > 1e9


def test_errors_are_json_with_a_status(ui):
    status, _, body = get(ui.url, "/api/run", path="mnist/missing")
    assert status == 404 and "No run 'missing'" in json.loads(body)["error"]
    status, _, body = get(ui.url, "/api/run", path="mnist/../x")
    assert status == 400 and "Invalid" in json.loads(body)["error"]
    status, _, body = get(ui.url, "/api/history", path="mnist/r0-baseline", keys="loss", x="bogus")
    assert status == 400
    status, _, _ = get(ui.url, "/api/nothing")
    assert status == 404


def test_a_damaged_run_is_marked_and_the_others_still_listed(tmp_path):
    root = tmp_path / "store"
    for rid in ("good", "bad"):
        run = localtrack.init(project="p", id=rid, dir=root)
        run.log({"loss": 1.0})
        run.finish()
    manifest = root / "p" / "runs" / "bad" / "manifest.json"
    manifest.write_bytes(b"{\"segments\": [")  # cut short
    proc = UIProcess(root)
    try:
        assert get_json(proc.url, "/api/projects")["projects"][0]["runs"] == 2
        runs = {r["id"]: r for r in get_json(proc.url, "/api/runs", project="p")["runs"]}
        assert runs["good"]["state"] == "finished" and runs["good"]["steps"] == 1
        assert runs["bad"]["state"] == "damaged" and str(manifest) in runs["bad"]["error"]
        status = get_json(proc.url, "/api/status", paths="p/good,p/bad")
        assert status["p/bad"] == {k: runs["bad"][k] for k in ("state", "steps", "updated", "error")}
        assert status["p/good"]["state"] == "finished"
    finally:
        code, _, err = proc.stop()
    assert code == 0 and "Traceback" not in err, err


# -- sweeps ----------------------------------------------------------------------------------

SWEEP_GRID = {"method": "grid", "name": "lr-grid", "metric": {"name": "val/loss", "goal": "minimize"},
              "parameters": {"lr": {"values": [0.3, 0.1, 0.5]}, "opt": {"value": "sgd"}}}


def _sweep_train() -> None:
    """Logs val/loss = lr + 1/step; the lr=0.5 point fails (an exception, no requeue)."""
    run = localtrack.init()
    for step in range(1, 4):
        run.log({"val/loss": run.config.lr + 1 / step})
    if run.config.lr == 0.5:
        raise RuntimeError("diverged")
    run.finish()


def make_sweep(root: Path, project: str = "tune") -> str:
    """A real grid sweep of three runs (two finished, one failed); returns its id."""
    sweep_id = localtrack.sweep(SWEEP_GRID, project=project, dir=str(root))
    ran = localtrack.agent(sweep_id, function=_sweep_train, project=project, dir=str(root))
    assert ran == 3
    return sweep_id


def test_sweeps_list_and_one_sweep(tmp_path):
    root = tmp_path / "store"
    sweep_id = make_sweep(root)
    by_lr = {r["params"]["lr"]: r["id"] for r in localtrack.Api(root).sweep(f"tune/{sweep_id}").runs}
    proc = UIProcess(root)
    try:
        listed = get_json(proc.url, "/api/sweeps", project="tune")["sweeps"]
        assert len(listed) == 1
        row = listed[0]
        assert row["id"] == sweep_id and row["method"] == "grid" and row["name"] == "lr-grid"
        assert row["metric"] == {"name": "val/loss", "goal": "minimize"}
        assert row["counts"] == {"finished": 2, "failed": 1} and row["runs"] == 3 and row["queue"] == 0
        assert row["best"]["id"] == by_lr[0.1]
        assert row["best"]["metric"] == pytest.approx(0.1 + 1 / 3)
        assert row["created"] > 1e9

        one = get_json(proc.url, "/api/sweep", path=f"tune/{sweep_id}")
        assert one["config"]["parameters"]["lr"] == {"values": [0.3, 0.1, 0.5]}
        assert one["queue"] == [] and one["best"] == row["best"]
        runs = {r["params"]["lr"]: r for r in one["runs"]}
        assert [r["params"]["lr"] for r in one["runs"]] == [0.3, 0.1, 0.5]   # grid order
        assert runs[0.5]["status"] == "failed" and runs[0.5]["exit_status"] == 1
        assert runs[0.3]["status"] == "finished" and runs[0.3]["requeues"] == 0
        assert runs[0.3]["params"] == {"lr": 0.3, "opt": "sgd"}
        assert runs[0.3]["metric"] == pytest.approx(0.3 + 1 / 3)
        # the sweep's runs are ordinary runs of the project
        ids = {r["id"] for r in get_json(proc.url, "/api/runs", project="tune")["runs"]}
        assert ids == set(by_lr.values())

        assert get_json(proc.url, "/api/sweeps", project="nothing-here")["sweeps"] == []
        status, _, body = get(proc.url, "/api/sweep", path="tune/nosuchsweep")
        assert status == 404 and "No sweep" in json.loads(body)["error"]
        status, _, body = get(proc.url, "/api/sweep", path="tune/../x")
        assert status == 400
        status, _, _ = get(proc.url, "/api/sweeps")
        assert status == 400
    finally:
        code, _, err = proc.stop()
    assert code == 0 and "Traceback" not in err, err


def test_sweeps_of_a_remote_store_are_an_empty_list(tmp_path):
    from localtrack._ui import _sweeps

    class _Remote:
        root = object()   # not a Path: a remote store

    assert _sweeps.sweeps(_Remote(), "p") == []  # type: ignore[arg-type]


# -- what the page is made of ----------------------------------------------------------------

def test_every_asset_is_local(ui):
    status, headers, page = get(ui.url, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    srcs = [s for s in re.findall(rb'(?:src|href)="([^"]+)"', page) if not s.startswith(b"#")]
    assert len(srcs) == 5 and all(s.startswith(b"/static/") for s in srcs), srcs
    assert '"/static/plotly.min.js"' in (STATIC_DIR / "app.js").read_text()  # loaded by the page
    for src in srcs:
        assert get(ui.url, src.decode())[0] == 200, src
    for asset in STATIC_DIR.iterdir():
        text = asset.read_text().replace("http://www.w3.org/2000/svg", "")  # a namespace, not a fetch
        assert not re.search(r"https?://", text), f"{asset.name} names an outside URL"
        sinks = (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(")
        for sink in sinks:
            assert sink not in text, f"{asset.name} uses {sink}"
    status, headers, body = get(ui.url, "/static/plotly.min.js", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == plotly_js().read_bytes()
    status, _, _ = get(ui.url, "/static/plotly.min.js", {"If-None-Match": headers["etag"]})
    assert status == 304


def test_security_headers(ui):
    _, headers, _ = get(ui.url, "/")
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-eval" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    _, headers, body = get(ui.url, "/api/runs", project="mnist")
    assert headers["content-type"] == "application/json"
    names = [r["name"] for r in json.loads(body)["runs"]]
    assert EVIL_NAME in names  # data stays data: JSON, never HTML


@pytest.mark.parametrize("host", ["evil.example:80", "attacker.test", ""])
def test_foreign_host_header_is_refused(ui, host):
    """DNS rebinding: a page on another site whose name resolves to 127.0.0.1."""
    status, _, body = get(ui.url, "/api/projects", {"Host": host})
    assert status == 403 and b"mnist" not in body


# -- binding ---------------------------------------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "localtrack", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_refuses_non_loopback_without_the_flag(store, host):
    res = cli("ui", "--dir", str(store), "--host", host, "--port", "0")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Refusing to bind" in res.stderr and "--allow-remote" in res.stderr and "ssh -L" in res.stderr
    assert "Traceback" not in res.stderr and "http://" not in res.stdout


def test_allow_remote_binds_with_a_warning(store, caplog):
    with caplog.at_level(logging.WARNING, logger="localtrack"):
        server = make_server(store, host="0.0.0.0", port=0, allow_remote=True)
    try:
        assert "not loopback" in caplog.text
        assert server.url.startswith("http://0.0.0.0:")
    finally:
        server.server_close()


def test_loopback_needs_no_flag_and_busy_port_is_a_clear_error(store):
    first = make_server(store, host="localhost", port=0)
    try:
        with pytest.raises(UsageError, match="Cannot listen.*--port"):
            make_server(store, host="127.0.0.1", port=first.port)
    finally:
        first.server_close()


def test_missing_store_is_served_empty(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="localtrack"):
        server = make_server(tmp_path / "not-yet", port=0)
    server.server_close()
    assert "no store at" in caplog.text


# -- downsampling ----------------------------------------------------------------------------

def test_downsampling_a_million_steps_keeps_spikes():
    n = 1_000_000
    steps = pa.array(range(n), pa.int64())
    values = [math.sin(i / 5000) for i in range(n)]
    values[123_457] = 50.0     # a one-step spike
    values[700_001] = -40.0
    values[5] = float("nan")
    table = pa.table({"_step": steps, "_timestamp": pa.array([1e9 + i / 100 for i in range(n)]),
                      "loss": pa.array(values), "text": pa.array(["a"] * n)})
    s = series(table, "loss", points=1000)  # how fast: benchmarks/bench_limits.py
    assert s["sampled"] and s["rows"] == n - 1 and len(s["x"]) == len(s["y"]) == 1000
    assert max(s["ymax"]) == 50.0 and min(s["ymin"]) == -40.0
    assert all(lo <= y <= hi for lo, y, hi in zip(s["ymin"], s["y"], s["ymax"], strict=True))
    assert s["x"] == sorted(s["x"]) and 0 <= s["x"][0] < 1000 and s["x"][-1] > n - 1000
    assert len(orjson.dumps(s)) < 120_000   # what the browser downloads for 10^6 steps
    window = series(table, "loss", points=1000, xmin=500_000, xmax=501_000)
    assert not window["sampled"] and window["x"] == list(range(500_000, 501_001))
    by_time = series(table, "loss", x="_timestamp", points=200)
    assert by_time["sampled"] and len(by_time["x"]) == 200 and max(by_time["ymax"]) == 50.0
    assert series(table, "text")["kind"] == "text"


def test_non_finite_values_never_reach_json():
    table = pa.table({"_step": pa.array(range(6), pa.int64()), "_timestamp": pa.array([1.0] * 6),
                      "v": pa.array([1.0, float("inf"), None, float("-inf"), float("nan"), 2.0])})
    s = series(table, "v")
    assert s == {"x": [0, 5], "y": [1.0, 2.0], "rows": 2, "sampled": False}
    huge = pa.table({"_step": pa.array(range(10_000), pa.int64()), "_timestamp": pa.array([1.0] * 10_000),
                     "v": pa.array([1.7e308] * 10_000)})
    assert all(math.isfinite(y) for y in series(huge, "v", points=10)["y"])


def test_long_history_over_http(store, ui):
    run = localtrack.init(project="long", id="l1", dir=store)
    for i in range(30_000):
        run.log({"loss": 1.0 / (i + 1), "acc": i % 7})
    run.finish()
    status, headers, body = get(ui.url, "/api/history?" + urlencode(
        {"path": "long/l1", "keys": "loss,acc", "points": 500}), {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    data = json.loads(gzip.decompress(body))
    loss = data["series"]["loss"]
    assert loss["sampled"] and loss["rows"] == 30_000 and len(loss["x"]) == 500
    assert loss["ymax"][0] == 1.0 and data["series"]["acc"]["ymax"][0] == 6


# -- a big store (how fast: benchmarks/bench_limits.py) ----------------------------------------

def test_thousand_runs_are_listed_first_and_from_the_cache(tmp_path):
    """1,000 runs: one made through the API, copied under 999 other ids (the format is a contract)."""
    root = tmp_path / "big"
    run = localtrack.init(project="big", id="seed", dir=root, config={"lr": 0.1, "model": {"depth": 3}},
                          tags=["a"], group="g")
    for i in range(20):
        run.log({"loss": 1 / (i + 1), "acc": i / 20})
    run.summary["best"] = 1
    run.finish()
    runs_dir = root / "big" / "runs"
    for i in range(999):
        rid = f"r{i:04d}"
        shutil.copytree(runs_dir / "seed", runs_dir / rid)
        meta = json.loads((runs_dir / rid / "run.json").read_bytes())
        (runs_dir / rid / "run.json").write_bytes(orjson.dumps({**meta, "id": rid, "name": f"run {i}"}))
    ui = UIProcess(root)
    try:
        first = get_json(ui.url, "/api/runs", project="big")["runs"]  # after the start-up read
        again = get_json(ui.url, "/api/runs", project="big")["runs"]  # from the server's cache
    finally:
        code, _, err = ui.stop()
    assert code == 0, err
    assert len(first) == len(again) == 1000 and first == again
    assert {r["steps"] for r in again} == {20} and {r["state"] for r in again} == {"finished"}
    assert sorted(r["id"] for r in again) == sorted(["seed"] + [f"r{i:04d}" for i in range(999)])
