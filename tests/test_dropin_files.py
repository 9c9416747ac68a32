"""Drop-in, what issue 16 left on the run and Api side: nested summary views, define_metric's
Metric, save() policies (live follows the file while the run lives), ApiRun.file() and
RunFile.download(), and run files carried by sync.

User scripts run in real subprocesses; what they leave is read back through the public API.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import localtrack
from tests.test_dropin import ok, run_py


@pytest.fixture
def job(tmp_path: Path) -> Path:
    path = tmp_path / "job"
    path.mkdir()
    return path


def api_run(job: Path, path: str = "p/r1") -> localtrack.ApiRun:
    return localtrack.Api(dir=job / "store").run(path)


# -- nested summary views ---------------------------------------------------------------------

def test_nested_summary_assignment_persists_as_wandb_does(job: Path) -> None:
    out = ok(run_py(job, """
        import localtrack as wandb
        run = wandb.init(project="p", id="r1", dir="store")
        wandb.log({"val/loss": 0.3})
        run.summary["best"] = {"acc": 0.5, "epoch": 1}
        run.summary["best"]["acc"] = 0.9          # a live view: persists
        run.summary.best.epoch = 4                # attribute form too
        run.summary["val"]["min"] = 0.1           # under a logged key
        run.summary["deep"] = {"a": {"b": 1, "c": 2}}
        run.summary["deep"]["a"]["b"] = 5
        del run.summary["deep"]["a"]["c"]
        run.summary.update({"cfg": {"x": 1, "y": 2}})
        run.summary.update({"cfg": {"x": 3}})     # W&B: a dict replaces what was set under it
        run.summary["best"].update({"note": "ok"})
        print(run.summary["best"]["acc"], dict(run.summary["best"]), run.summary.deep.a.b)
    """))
    assert out.split("\n")[0] == "0.9 {'acc': 0.9, 'epoch': 4, 'note': 'ok'} 5"
    assert api_run(job).summary == {"val": {"loss": 0.3, "min": 0.1},
                                    "best": {"acc": 0.9, "epoch": 4, "note": "ok"},
                                    "deep": {"a": {"b": 5}}, "cfg": {"x": 3}}
    stored = json.loads((job / "store" / "p" / "runs" / "r1" / "summary.json").read_text())
    assert stored["best/acc"] == 0.9 and "deep/a/c" not in stored and "cfg/y" not in stored


def test_a_summary_view_refuses_what_the_summary_refuses(store: Path) -> None:
    run = localtrack.init(project="p", id="v1", dir=store)
    run.summary["a"] = {"b": 1}
    view = run.summary["a"]
    with pytest.raises(localtrack.LocaltrackError):
        view["c"] = object()
    with pytest.raises(KeyError):
        del view["nothing"]
    with pytest.raises(AttributeError):
        view.nothing  # noqa: B018
    assert view == {"b": 1} and len(view) == 1 and list(view) == ["b"]
    run.finish()


# -- define_metric's Metric -------------------------------------------------------------------

def test_define_metric_returns_wandbs_metric(job: Path) -> None:
    out = ok(run_py(job, """
        import localtrack as wandb
        run = wandb.init(project="p", id="r1", dir="store")
        m = wandb.define_metric("val/*", step_metric="epoch", summary="min,max", goal="max")
        print(m.name, m.step_metric, m.step_sync, m.summary, m.goal, m.hidden)
        h = run.define_metric("secret", hidden=True)
        print(h.name, h.step_metric, h.summary, h.goal, h.hidden)
    """))
    assert out.split("\n")[:2] == ["val/* epoch True ('min', 'max') maximize None",
                                   "secret None None None True"]
    off = localtrack.init(mode="disabled")
    assert off.define_metric("x", summary="min").summary == ("min",)
    off.finish()
