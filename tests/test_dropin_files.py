"""Drop-in, what issue 16 left on the run and Api side: nested summary views, define_metric's
Metric, save() policies (live follows the file while the run lives), ApiRun.file() and
RunFile.download(), and run files carried by sync.

User scripts run in real subprocesses; what they leave is read back through the public API.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import localtrack
from localtrack.errors import UsageError
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


# -- save() policies ------------------------------------------------------------------------

LIVE = """
import os, sys, time
import localtrack as wandb

def put(name, text):  # as a training script rewrites a checkpoint: whole, then renamed
    with open(name + ".part", "w") as f:
        f.write(text)
    os.replace(name + ".part", name)

put("live.txt", "v1")
put("now.txt", "n1")
put("end.txt", "e1")
run = wandb.init(project="p", id="r1", dir="store")
wandb.save("live.txt")
wandb.save("now.txt", policy="now")
wandb.save("end.txt", policy="end")
wandb.save("chk/*.bin")                      # a folder that does not exist yet
put("now.txt", "n2")
print("ready", flush=True)
for _ in range(1200):                        # the test says when to rewrite
    if os.path.exists("go"):
        break
    time.sleep(0.05)
put("live.txt", "v2")
os.makedirs("chk", exist_ok=True)
for i in range(100_000):                     # rewritten until the test kills us
    put("chk/model.bin", str(i) * 1000 + "|end")
    if i == 3:
        print("writing", flush=True)
    time.sleep(0.002)
"""


def wait_for(what: str, check: Any, timeout: float = 60) -> Any:
    """``check()`` once it is truthy; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def test_live_save_follows_changes_and_a_kill_leaves_whole_copies(job: Path) -> None:
    (job / "train.py").write_text(LIVE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "WANDB_"))}
    proc = subprocess.Popen([sys.executable, "train.py"], cwd=job, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n", proc.stderr
        files = job / "store" / "p" / "runs" / "r1" / "files"
        assert read(files / "live.txt") == "v1" and read(files / "now.txt") == "n1"
        (job / "go").touch()
        # Another process (this one) sees the new content while the writer still runs.
        wait_for("the live copy of v2", lambda: read(files / "live.txt") == "v2")
        assert proc.stdout.readline() == "writing\n"
        copies = wait_for("live copies of chk/model.bin",
                          lambda: read(files / "chk" / "model.bin"))
        for _ in range(20):  # every copy read while it is being replaced is whole
            text = read(files / "chk" / "model.bin")
            assert text is not None and text.endswith("|end") and len(text) >= 1004, text
        assert proc.poll() is None, proc.stderr
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert proc.returncode == -signal.SIGKILL
    text = read(files / "chk" / "model.bin")
    assert text is not None and text.endswith("|end") and copies
    assert read(files / "now.txt") == "n1"      # "now": the call only
    assert read(files / "end.txt") is None      # "end": at finish, which never came
    names = [f.name for f in api_run(job).files()]
    assert names == ["chk/model.bin", "live.txt", "now.txt"], names  # no temp file listed


def test_end_policy_copies_at_finish_only_and_now_ignores_later_changes(job: Path) -> None:
    ok(run_py(job, """
        import localtrack as wandb
        open("a.txt", "w").write("a1")
        open("b.txt", "w").write("b1")
        run = wandb.init(project="p", id="r1", dir="store")
        assert wandb.save("a.txt", policy="end") == []
        assert len(wandb.save("b.txt", policy="now")) == 1
        assert not run.summary.keys() and not __import__("os").path.exists(run.dir + "/files/a.txt")
        open("a.txt", "w").write("a2")
        open("b.txt", "w").write("b2")
        run.finish()
    """))
    files = job / "store" / "p" / "runs" / "r1" / "files"
    assert read(files / "a.txt") == "a2" and read(files / "b.txt") == "b1"


# -- ApiRun.file() / RunFile.download() -------------------------------------------------------

SAVER = """
import os
import localtrack as wandb
os.makedirs("ckpt/sub", exist_ok=True)
open("ckpt/a.txt", "w").write("alpha")
open("ckpt/sub/b.txt", "w").write("beta")
run = wandb.init(project="p", id="r1", dir="store")
wandb.save("ckpt/**/*.txt", policy="now")
run.finish()
"""


def check_downloads(run: localtrack.ApiRun, dest: Path) -> None:
    """W&B's File semantics on ``run``'s saved files, downloaded into ``dest``."""
    files = run.files()
    assert [(f.name, f.size) for f in files] == [("ckpt/a.txt", 5), ("ckpt/sub/b.txt", 4)]
    b = run.file("ckpt/sub/b.txt")
    assert b == files[1] and b.url.split(":", 1)[0] in ("file", "s3")
    with b.download(root=dest) as f:
        assert f.read() == "beta"
    assert (dest / "ckpt" / "sub" / "b.txt").read_text() == "beta"
    (dest / "ckpt" / "sub" / "b.txt").write_text("mine")
    with pytest.raises(ValueError, match="replace=True"):
        b.download(root=dest)                                  # W&B: exists -> ValueError
    with b.download(root=dest, exist_ok=True) as f:            # left as it is
        assert f.read() == "mine"
    with b.download(root=dest, replace=True) as f:             # copied over it
        assert f.read() == "beta"
    with run.file("ckpt/a.txt").download(root=dest) as f:
        assert f.read() == "alpha"
    for bad in ("../run.json", "/etc/passwd", "ckpt/../../run.json", "", "missing.txt"):
        with pytest.raises(UsageError):
            run.file(bad)


def test_file_and_download_as_wandb(job: Path) -> None:
    ok(run_py(job, SAVER))
    check_downloads(api_run(job), job / "dl")
    assert not list((job / "dl").rglob(".tmp-*"))


def test_download_refuses_a_name_that_climbs_out_of_root(job: Path) -> None:
    ok(run_py(job, SAVER))
    f = api_run(job).file("ckpt/a.txt")
    hostile = dataclasses.replace(f, name="../../escaped.txt")
    with pytest.raises(UsageError):
        hostile.download(root=job / "dl")
    assert not (job / "escaped.txt").exists()
    # A saved file replaced by a link after the listing is not followed.
    target = job / "store" / "p" / "runs" / "r1" / "files" / "ckpt" / "a.txt"
    target.unlink()
    target.symlink_to(job / "train.py")
    with pytest.raises(localtrack.LocaltrackError):
        f.download(root=job / "dl2")
    assert not (job / "dl2" / "ckpt" / "a.txt").exists()
