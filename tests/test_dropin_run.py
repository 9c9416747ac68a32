"""Drop-in, the run's side (issue 16): define_metric, watch, alert, save/restore, save_code,
config-defaults.yaml, finish(exit_code=None) and W&B's run attributes.

Each is a W&B-style script run in a real subprocess; what it leaves on disk is read back
through the public read API and `localtrack show`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def show(job: Path, path: str = "p/r1") -> str:
    res = subprocess.run([sys.executable, "-m", "localtrack", "show", path, "--dir",
                          str(job / "store")], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert res.returncode == 0, res.stderr
    return res.stdout


# -- define_metric ---------------------------------------------------------------------------

METRICS = """
import sys
import localtrack as wandb
run = wandb.init(project="p", id="r1", dir="store", resume="allow")
if not run.resumed:
    wandb.define_metric("epoch")
    wandb.define_metric("val/*", step_metric="epoch", summary="min,last")
    run.define_metric("train/loss", summary="none")
    run.define_metric("acc", summary="best", goal="maximize", hidden=True)
losses = [float(x) for x in sys.argv[1].split(",")]
for i, val in enumerate(losses):
    wandb.log({"train/loss": val * 2, "acc": 1 - val})
    wandb.log({"epoch": run.step})
    wandb.log({"val/loss": val})
print(run.summary["val/loss"]["min"], "train/loss" in run.summary)
"""


def test_define_metric_summaries_hold_across_a_resume(job: Path) -> None:
    # Session one logs 0.5, 0.2, 0.9; session two (resumed: defines nothing) 0.7, 0.4.
    assert ok(run_py(job, METRICS, "0.5,0.2,0.9")).split() == ["0.2", "False"]
    assert ok(run_py(job, METRICS, "0.7,0.4")).split() == ["0.2", "False"]
    run = api_run(job)
    rows = [r for r in run.history_table().to_pylist() if r["val/loss"] is not None]
    assert [r["epoch"] for r in rows] == [1, 4, 7, 10, 13]  # step_sync, also after the resume
    assert run.summary["val"]["loss"] == {"min": 0.2, "last": 0.4}
    assert run.summary["acc"] == {"best": pytest.approx(0.8)}
    assert "train" not in run.summary  # summary="none"
    assert run.metrics == {
        "epoch": {}, "val/*": {"step_metric": "epoch", "step_sync": True, "summary": ["min", "last"]},
        "train/loss": {"summary": ["none"]},
        "acc": {"summary": ["best"], "goal": "maximize", "hidden": True}}
    assert "name='val/*' step_metric='epoch'" in show(job)


def test_step_sync_gives_each_point_of_a_metric_its_x(job: Path) -> None:
    ok(run_py(job, """
        import localtrack as wandb
        wandb.init(project="p", id="r1", dir="store")
        wandb.define_metric("val/*", step_metric="epoch")
        wandb.log({"train": 1.0})  # no epoch yet: nothing to add
        for epoch in range(3):
            wandb.log({"epoch": epoch})
            wandb.log({"val/acc": epoch / 10, "val/n": epoch})
            wandb.log({"train": 2.0})
        wandb.define_metric("other", step_metric="epoch", step_sync=False)
        wandb.log({"other": 5})
    """))
    rows = api_run(job).history_table().to_pylist()
    assert [(r["val/acc"], r["epoch"]) for r in rows if r["val/acc"] is not None] == \
        [(0.0, 0), (0.1, 1), (0.2, 2)]
    assert all(r["epoch"] is None for r in rows if r["train"] is not None)
    assert rows[-1]["other"] == 5 and rows[-1]["epoch"] is None  # step_sync=False


def test_define_metric_overwrite_replaces_and_a_later_one_merges(job: Path) -> None:
    ok(run_py(job, """
        import localtrack as wandb
        run = wandb.init(project="p", id="r1", dir="store")
        run.define_metric("loss", summary="max")
        run.define_metric("loss", step_metric="t")          # merges: summary stays
        run.define_metric("x", summary="mean")
        run.define_metric("x", summary="first", overwrite=True)
        for i in range(4):
            run.log({"loss": [3, 1, 4, 1][i], "x": i + 1, "t": i})
        print(run.summary["loss"], run.summary["x"])
    """))
    assert api_run(job).metrics["loss"] == {"summary": ["max"], "step_metric": "t", "step_sync": True}
    assert api_run(job).summary["loss"] == {"max": 4}
    assert api_run(job).summary["x"] == {"first": 1}


@pytest.mark.parametrize("kwargs", [
    {"name": "*loss"}, {"name": ""}, {"name": 3}, {"name": "a", "summary": "median"},
    {"name": "a", "summary": "min,none"}, {"name": "a", "goal": "up"},
    {"name": "a", "summary": "best"}, {"name": "a", "step_metric": "e*"},
])
def test_define_metric_refuses_what_it_cannot_use(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with localtrack.init(project="p", dir=tmp_path) as run:
        name = kwargs.pop("name")
        with pytest.raises(UsageError):
            run.define_metric(name, **kwargs)  # type: ignore[arg-type]
        assert localtrack.Api(dir=tmp_path).run(run.path).metrics == {}


def test_define_metric_star_is_every_key_but_those_defined(tmp_path: Path) -> None:
    """Lightning's and Transformers' W&B loggers: "*" charts every key against their step."""
    with localtrack.init(project="p", dir=tmp_path) as run:
        run.define_metric("trainer/global_step")
        run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        run.log({"loss": 1.0, "trainer/global_step": 4})
        run.log({"val/acc": 0.5})
    read = localtrack.Api(dir=tmp_path).run(run.path)
    assert read.metrics["*"] == {"step_metric": "trainer/global_step", "step_sync": True}
    assert [r["trainer/global_step"] for r in read.history_table().to_pylist()] == [4, 4]


def test_define_metric_needs_an_active_run() -> None:
    with pytest.raises(UsageError, match="active run"):
        localtrack.define_metric("x")


# -- watch -----------------------------------------------------------------------------------

WATCH = """
import torch
import localtrack as wandb
torch.manual_seed(0)
run = wandb.init(project="p", id="r1", dir="store")
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
wandb.watch(model, criterion=torch.nn.MSELoss(), log=LOG, log_freq=2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for i in range(5):
    loss = model(torch.randn(16, 4)).pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    wandb.log({"loss": loss.item()})
hooks = lambda: len(model._forward_hooks) + sum(len(p._backward_hooks or {}) for p in model.parameters())
print(hooks())
UNWATCH
print(hooks())
"""


@pytest.mark.parametrize("how", ["finish", "unwatch"])
def test_watch_logs_histograms_every_log_freq_steps_until_unwatched(job: Path, how: str) -> None:
    pytest.importorskip("torch")
    end = "run.finish()" if how == "finish" else "wandb.unwatch(model)\nwandb.log({'loss': 0.0})"
    out = ok(run_py(job, WATCH.replace("LOG", '"all"').replace("UNWATCH", end)))
    assert out.split() == ["5", "0"]  # one forward hook and one per parameter, then none
    run = api_run(job)
    names = {c for c in run.history_table().column_names if c.startswith(("parameters/", "gradients/"))}
    assert names == {f"{kind}/{layer}.{p}" for kind in ("parameters", "gradients")
                     for layer in (0, 2) for p in ("weight", "bias")}
    # Steps 0, 2, 4 (log_freq=2), each joined to the row the script logged next.
    assert [s for s, _ in run.histograms("gradients/0.weight")] == [0, 2, 4]
    assert [s for s, h in run.histograms("parameters/2.weight")] == [0, 2, 4]
    assert sum(run.histograms("parameters/0.weight")[0][1].counts) == 32
    assert run.state == "finished"


def test_watch_gradients_only_and_refusals(job: Path) -> None:
    pytest.importorskip("torch")
    ok(run_py(job, WATCH.replace("LOG", '"gradients"').replace("UNWATCH", "run.finish()")))
    cols = api_run(job).history_table().column_names
    assert any(c.startswith("gradients/") for c in cols)
    assert not any(c.startswith("parameters/") for c in cols)
    with localtrack.init(project="p", dir=job / "other") as run:
        for bad in ({"models": object()}, {"models": None}):
            with pytest.raises(UsageError, match="torch.nn.Module"):
                run.watch(**bad)  # type: ignore[arg-type]
        import torch

        for kwargs in ({"log": "weights"}, {"log_freq": 0}, {"log_freq": 1.5}):
            with pytest.raises(UsageError):
                run.watch(torch.nn.Linear(2, 2), **kwargs)  # type: ignore[arg-type]


# -- alert -----------------------------------------------------------------------------------


def test_alerts_are_events_that_show_prints(job: Path) -> None:
    ok(run_py(job, """
        from datetime import timedelta
        import localtrack as wandb
        run = wandb.init(project="p", id="r1", dir="store")
        wandb.alert(title="Low accuracy", text="acc 0.1 < 0.5")
        run.alert("Diverged", "loss is NaN", level=wandb.AlertLevel.ERROR,
                  wait_duration=timedelta(minutes=5))
        run.alert("Diverged", "again", level="ERROR", wait_duration=300)  # within 5 min: dropped
        run.alert("Slow", "1 it/s", level="WARN")
    """))
    alerts = [e for e in api_run(job).events if e["event"] == "alert"]
    assert [(a["title"], a["level"]) for a in alerts] == \
        [("Low accuracy", "INFO"), ("Diverged", "ERROR"), ("Slow", "WARN")]
    assert alerts[1]["wait_duration"] == 300.0
    out = show(job)
    assert "alert at step 0 [ERROR] Diverged: loss is NaN" in out
    assert "[INFO] Low accuracy: acc 0.1 < 0.5" in out


@pytest.mark.parametrize("args", [(1, "t"), ("t", None), ("t", "x", "DEBUG"), ("t", "x", "INFO", -1)])
def test_alert_refuses_bad_arguments(tmp_path: Path, args: tuple[object, ...]) -> None:
    with localtrack.init(project="p", dir=tmp_path) as run, pytest.raises(UsageError):
        run.alert(*args)  # type: ignore[arg-type]


# -- save / restore / save_code / config-defaults.yaml --------------------------------------


def test_save_copies_files_and_restore_reads_them_back(job: Path) -> None:
    (job / "ckpt").mkdir()
    (job / "ckpt" / "a.txt").write_text("first")
    (job / "ckpt" / "sub").mkdir()
    (job / "ckpt" / "sub" / "b.txt").write_text("nested")
    out = ok(run_py(job, """
        import os
        import localtrack as wandb
        run = wandb.init(project="p", id="r1", dir="store")
        print(len(wandb.save("ckpt/*.txt")))                       # now and at the end
        wandb.save(os.path.abspath("ckpt/sub/b.txt"), base_path="ckpt", policy="now")
        wandb.save("ckpt/late.txt", policy="end")
        open("ckpt/late.txt", "w").write("written after save()")
        open("ckpt/a.txt", "w").write("changed")                  # "live": copied again at finish
        print(wandb.restore("ckpt/a.txt").read())
        for bad in ("../x.txt", "/etc/passwd"):
            try:
                wandb.save(bad, base_path=".")
            except wandb.LocaltrackError as exc:
                print("refused", type(exc).__name__)
    """))
    assert out.split("\n")[:4] == ["1", "first", "refused UsageError", "refused UsageError"]
    files = job / "store" / "p" / "runs" / "r1" / "files"
    assert sorted(str(p.relative_to(files)) for p in files.rglob("*") if p.is_file()) == \
        ["ckpt/a.txt", "ckpt/late.txt", "sub/b.txt"]
    assert (files / "ckpt" / "a.txt").read_text() == "changed"
    assert not list(job.parent.glob("x.txt")) and not (files.parent / "x.txt").exists()
    with localtrack.restore("sub/b.txt", run_path="team/p/r1", dir=job / "store") as f:
        assert f.read() == "nested"
    dest = job / "restored"
    with localtrack.restore("ckpt/late.txt", run_path="p/r1", root=dest, dir=job / "store") as f:
        assert f.read() == "written after save()"
    assert (dest / "ckpt" / "late.txt").read_text() == "written after save()"
    for bad in ("missing.txt", "../run.json", "/etc/passwd"):
        with pytest.raises(UsageError):
            localtrack.restore(bad, run_path="p/r1", dir=job / "store")


def test_save_code_copies_the_main_script_and_config_defaults_are_loaded(job: Path) -> None:
    (job / "config-defaults.yaml").write_text(
        "wandb_version: 1\nlr:\n  desc: learning rate\n  value: 0.1\nbatch: 32\nepochs:\n  value: 3\n")
    code = """
        import localtrack as wandb
        run = wandb.init(project="p", id="r1", dir="store", save_code=True, config={"batch": 64})
        print(wandb.login(), wandb.setup(), wandb.teardown())
        print(dict(run.config))
    """
    out = ok(run_py(job, code))
    assert out.split("\n")[:2] == ["True None None", "{'lr': 0.1, 'batch': 64, 'epochs': 3}"]
    saved = job / "store" / "p" / "runs" / "r1" / "code" / "train.py"
    assert saved.read_text() == (job / "train.py").read_text()
    ok(run_py(job, code.replace("save_code=True", "save_code=None").replace('"r1"', '"r2"'),
              env={"WANDB_SAVE_CODE": "true"}))
    assert (job / "store" / "p" / "runs" / "r2" / "code" / "train.py").is_file()
    ok(run_py(job, code.replace("save_code=True", "save_code=None").replace('"r1"', '"r3"')))
    assert not (job / "store" / "p" / "runs" / "r3" / "code").exists()


# -- finish and the run's attributes ---------------------------------------------------------


@pytest.mark.parametrize(("call", "state"), [("wandb.finish()", "finished"),
                                             ("wandb.finish(exit_code=None, quiet=True)", "finished"),
                                             ("run.finish(exit_code=None)", "finished"),
                                             ("run.finish(exit_code=3)", "failed")])
def test_finish_with_no_exit_code_is_a_success(job: Path, call: str, state: str) -> None:
    ok(run_py(job, f"""
        import localtrack as wandb
        run = wandb.init(project="p", id="r1", dir="store")
        wandb.log({{"x": 1}})
        {call}
    """))
    assert api_run(job).state == state


def test_finish_refuses_an_exit_code_that_is_not_an_int_and_stays_running(tmp_path: Path) -> None:
    run = localtrack.init(project="p", dir=tmp_path)
    with pytest.raises(UsageError, match="exit_code"):
        run.finish(exit_code="ok")  # type: ignore[arg-type]
    assert run.state == "running"
    run.finish()
    assert localtrack.Api(dir=tmp_path).run(run.path).state == "finished"


def test_config_access_update_setdefaults_as_dict_and_dotted_keys(job: Path) -> None:
    out = ok(run_py(job, """
        import localtrack as wandb
        run = wandb.init(project="p", id="r1", dir="store", config={"lr": 0.1, "opt.momentum": 0.9})
        c = run.config
        c.batch = 32
        c["epochs"] = 3
        c.update({"lr": 0.2}, allow_val_change=True)
        c.setdefaults({"lr": 0.5, "wd": 0.01})
        print(c.lr, c["batch"], c["opt.momentum"], "allow_val_change" in c)
        print(sorted(c.as_dict()))
    """))
    lines = out.split("\n")
    assert lines[0] == "0.2 32 0.9 False"
    assert lines[1] == "['batch', 'epochs', 'lr', 'opt.momentum', 'wd']"
    assert api_run(job).config == {"lr": 0.2, "batch": 32, "opt.momentum": 0.9, "epochs": 3,
                                   "wd": 0.01}


def test_summary_attribute_item_update_and_nested(job: Path) -> None:
    out = ok(run_py(job, """
        import localtrack as wandb
        run = wandb.init(project="p", id="r1", dir="store")
        wandb.log({"val/loss": 0.3, "acc": 0.5})
        run.summary.best_acc = 0.9
        wandb.summary["final"] = 1
        run.summary.update({"test": {"acc": 0.8, "loss": 0.2}})
        print(run.summary.best_acc, run.summary.acc, run.summary["val"], run.summary.test["acc"])
        try:
            run.summary.nothing
        except AttributeError:
            print("AttributeError")
    """))
    assert out.split("\n")[:2] == ["0.9 0.5 {'loss': 0.3} 0.8", "AttributeError"]
    assert api_run(job).summary == {"val": {"loss": 0.3}, "acc": 0.5, "best_acc": 0.9, "final": 1,
                                    "test": {"acc": 0.8, "loss": 0.2}}


def test_run_name_tags_group_notes_job_type_entity_persist(job: Path) -> None:
    out = ok(run_py(job, """
        import localtrack as wandb
        run = wandb.init(project="p", id="r1", dir="store", entity="team", tags=["a"],
                         group="g", job_type="train", notes="n")
        print(run.name, run.tags, run.group, run.job_type, run.notes, run.entity)
        run.name = "renamed"
        run.tags = run.tags + ("b",)
        run.group, run.notes, run.job_type = "g2", "n2", "eval"
        try:
            run.tags = "x", 3
        except wandb.LocaltrackError:
            print("refused")
    """))
    assert out.split("\n")[:2] == ["r1 ('a',) g train n team", "refused"]
    run = api_run(job)
    assert (run.name, run.tags, run.group, run.notes, run.job_type, run.entity) == \
        ("renamed", ["a", "b"], "g2", "n2", "eval", "team")
    assert "(renamed)" in show(job)


def test_run_url_path_dir_step_resumed_sweep_id_project_name(job: Path) -> None:
    code = """
        import localtrack as wandb
        run = wandb.init(project="p", id="r1", dir="store", resume="allow")
        wandb.log({"x": 1})
        print(run.url, run.path, run.dir, run.step, run.resumed, run.sweep_id, run.project_name())
    """
    first = ok(run_py(job, code)).split()
    assert first[0] == "http://127.0.0.1:8080/#/p/p/r/r1"
    assert first[1:] == ["p/r1", str(job / "store" / "p" / "runs" / "r1"), "1", "False", "None", "p"]
    assert ok(run_py(job, code)).split()[3:5] == ["2", "True"]


def test_sweep_id_is_the_sweep_of_an_agents_run(tmp_path: Path) -> None:
    seen: list[str | None] = []

    def train() -> None:
        run = localtrack.init()
        seen.append(run.sweep_id)
        run.log({"loss": 1.0})

    sid = localtrack.sweep({"method": "grid", "metric": {"name": "loss", "goal": "minimize"},
                            "parameters": {"lr": {"values": [0.1]}}}, project="p", dir=tmp_path)
    localtrack.agent(sid, function=train, count=1, project="p", dir=tmp_path)
    assert seen == [sid]


def test_a_disabled_run_takes_the_new_calls(tmp_path: Path) -> None:
    run = localtrack.init(project="p", mode="disabled", dir=tmp_path / "store", name="n", tags=["t"])
    run.define_metric("val/*", step_metric="epoch", summary="min")
    run.alert("t", "x")
    assert run.save("*.txt") == []
    run.watch(object())
    run.unwatch()
    run.name = "m"
    assert (run.name, run.tags, run.url.endswith(f"/r/{run.id}")) == ("m", ("t",), True)
    with pytest.raises(UsageError):
        localtrack.restore("a.txt")
    run.finish(exit_code=None, quiet=True)
    assert not (tmp_path / "store").exists()


def test_run_json_keeps_its_other_fields_when_renamed(tmp_path: Path) -> None:
    with localtrack.init(project="p", id="r1", dir=tmp_path, entity="e") as run:
        before = json.loads((Path(run.dir) / "run.json").read_text())
        run.name = "x"
        run.notes = None
        after = json.loads((Path(run.dir) / "run.json").read_text())
    assert after == {**before, "name": "x"}


# -- papercuts -------------------------------------------------------------------------------


def test_config_paths_devices_and_dtypes_are_stored_as_strings(job: Path) -> None:
    pytest.importorskip("torch")
    out = ok(run_py(job, """
        import pathlib
        import torch
        import localtrack as wandb
        run = wandb.init(project="p", id="r1", dir="store",
                         config={"data": pathlib.Path("/data/x"), "device": torch.device("cpu"),
                                 "dtype": torch.bfloat16, "nested": {"dirs": [pathlib.Path("a")]}})
        run.config.update({"out": pathlib.PurePosixPath("out/1")})
        run.config.setdefaults({"dev2": torch.device("cpu", 0)})
        try:
            run.config.update({"model": object()})
        except wandb.LocaltrackError as exc:
            print(exc)
        try:
            wandb.init(project="p", id="r2", dir="store", config={"model": object()},
                       reinit="create_new")
        except wandb.LocaltrackError as exc:
            print(exc)
    """))
    assert api_run(job).config == {"data": "/data/x", "device": "cpu", "dtype": "torch.bfloat16",
                                   "nested": {"dirs": ["a"]}, "out": "out/1", "dev2": "cpu:0"}
    lines = out.strip().split("\n")
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("Cannot store config key 'model' in run '"), line
        assert "Cannot log" not in line and "Config values may be" in line


def test_show_cut_off_by_a_closed_pipe_ends_quietly(job: Path) -> None:
    ok(run_py(job, """
        import localtrack as wandb
        run = wandb.init(project="p", id="r1", dir="store", config={f"k{i}": i for i in range(3000)})
        for i in range(3000):
            run.log({"a": i})
    """))
    # As `localtrack show p/r1 | head -2`: the reader closes the pipe after two lines.
    proc = subprocess.Popen([sys.executable, "-m", "localtrack", "show", "p/r1", "--dir",
                             str(job / "store"), "--rows", "3000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ,
                                                         "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout is not None and proc.stderr is not None
    lines = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141  # 128 + SIGPIPE, as a shell reports it
    assert lines[0].startswith(b"run      p/r1")
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err


def test_an_agent_on_a_finished_sweep_says_so(tmp_path: Path) -> None:
    sid = localtrack.sweep({"method": "grid", "parameters": {"x": {"values": [1, 2]}}},
                           project="p", dir=tmp_path)
    assert localtrack.agent(sid, function=lambda: localtrack.init().log({"a": 1}), project="p",
                            dir=tmp_path) == 2
    res = subprocess.run([sys.executable, "-m", "localtrack", "agent", f"p/{sid}", "--dir",
                          str(tmp_path)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert res.returncode == 0, res.stderr  # nothing failed: an agent array may start late
    assert f"sweep p/{sid} has no job left to run (2 finished)" in res.stderr


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "localtrack", *args], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_doctor_reads_a_sync_copy_without_repairing_it(tmp_path: Path) -> None:
    store, remote = tmp_path / "store", tmp_path / "remote"
    for rid in ("a", "b"):
        with localtrack.init(project="p", id=rid, dir=store) as run:
            run.log({"x": 1})
    live = localtrack.init(project="p", id="live", dir=store)
    live.log({"x": 1})
    localtrack.sync(str(remote), dir=store)
    live.finish()
    res = _cli("doctor", "--dir", str(remote))  # raised IsADirectoryError, then saw chunk folders
    assert (res.returncode, res.stdout.strip()) == (0, "0 problem(s), 0 fixed, 0 left"), res.stderr
    (remote / "p" / "runs" / "b" / "config.json").write_text("not json")
    res = _cli("doctor", "--dir", str(remote))
    assert res.returncode == 1
    assert res.stdout.startswith("p/b  NEEDS ATTENTION: cannot be read from this sync copy")
    assert "Sync again from the source store" in res.stdout
    res = _cli("doctor", "--dir", str(remote), "--fix")
    assert res.returncode == 2 and "is a copy that `localtrack sync` wrote" in res.stderr
    assert (remote / "p" / "runs" / "b" / "config.json").read_text() == "not json"
    res = _cli("doctor", "nosuch", "--dir", str(store))
    assert res.returncode == 2 and "No project 'nosuch'" in res.stderr


def test_a_sync_copy_says_when_the_run_changed_not_when_it_was_copied(tmp_path: Path) -> None:
    store, remote = tmp_path / "store", tmp_path / "remote"
    with localtrack.init(project="p", id="a", dir=store) as run:
        for i in range(10):
            run.log({"x": i})
    finished = [e["time"] for e in localtrack.Api(dir=store).run("p/a").events][-1]
    localtrack.sync(str(remote), dir=store)
    copied = localtrack.Api(dir=remote).run("p/a").updated
    assert copied == finished  # the finished event: the run's last change, not a file's time
    assert copied < (remote / "p" / "runs" / "a" / "run.json").stat().st_mtime
