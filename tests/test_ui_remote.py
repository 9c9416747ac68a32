"""`localtrack ui --dir s3://...`: the dashboard over a store synced to the loopback S3 server."""

from __future__ import annotations

import json

import localtrack

from . import s3server
from .test_ui_server import get_json
from .ui_helpers import UIProcess

s3_server, s3 = s3server.s3_server, s3server.s3  # the loopback S3 fixtures


def test_dashboard_reads_a_synced_s3_store(s3, tmp_path):
    store = tmp_path / "store"
    for rid, lr in (("a", 0.1), ("b", 0.2)):
        run = localtrack.init(project="p", id=rid, dir=store, config={"lr": lr})
        for step in range(50):
            run.log({"loss": lr * (50 - step)})
        run.summary["best"] = lr
        run.finish()
    uri = s3.uri(s3.new_bucket())
    localtrack.sync(uri, dir=str(store))
    ui = UIProcess(uri)  # a URI where the helper expects a Path: it only formats it
    try:
        assert [p["name"] for p in get_json(ui.url, "/api/projects")["projects"]] == ["p"]
        runs = {r["id"]: r for r in get_json(ui.url, "/api/runs", project="p")["runs"]}
        assert set(runs) == {"a", "b"} and runs["a"]["state"] == "finished"
        assert runs["b"]["steps"] == 50 and runs["b"]["config"] == {"lr": 0.2}
        assert runs["a"]["summary"]["best"] == 0.1
        series = get_json(ui.url, "/api/history", path="p/a", keys="loss")["series"]["loss"]
        assert series["x"] == list(range(50))
        assert series["y"] == [0.1 * (50 - s) for s in range(50)]
    finally:
        code, out, err = ui.stop()
    assert code == 0 and "Traceback" not in err, err
    assert s3server.SECRET_KEY not in out + err and json.dumps(s3server.SECRET_KEY) not in err
