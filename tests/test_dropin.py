"""Drop-in for W&B (issue 16): scripts written for ``wandb`` run with ``import localtrack as wandb``.

The scripts here are written the way W&B users write them (argparse config, W&B's init()
arguments and settings, W&B's environment variables) and run in real subprocesses. Two of
W&B's own examples (wandb/examples: api-examples/metrics-at-different-steps/train.py, which
commits each step with a bare ``wandb.log()``, and api-examples/resume/train.py, resumed with
``WANDB_RESUME=allow WANDB_RUN_ID=...``) ran unchanged but for the import while this was
written; their code is not copied here: METRICS and RESUME below do what they do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest

import localtrack
from localtrack import _session, _settings
from localtrack.errors import UnknownArgumentError, UsageError


@pytest.fixture(autouse=True)
def no_wandb_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B's variables of the developer's shell must not steer these tests."""
    for key in list(os.environ):
        if key.startswith("WANDB_"):
            monkeypatch.delenv(key)


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """The folder a user's script is started in (and its only contents at first)."""
    path = tmp_path / "job"
    path.mkdir()
    return path


def run_py(cwd: Path, code: str, *args: str, env: dict[str, str] | None = None,
           name: str = "train.py") -> subprocess.CompletedProcess[str]:
    """Run ``code`` as the file ``name`` (a user's script) in a subprocess, in ``cwd``."""
    path = cwd / name
    path.write_text(textwrap.dedent(code))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "WANDB_"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(path), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


TRAIN = """
import argparse
import localtrack as wandb

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--api_key", default="hush")
parser.add_argument("--out", default="store")
args = parser.parse_args()

run = wandb.init(project="mnist", entity="vision-team", name="baseline", tags=["cnn", "v1"],
                 group="sweep-a", job_type="train", notes="first try", config=args,
                 config_exclude_keys=["api_key"], dir=args.out, reinit=True, save_code=True,
                 settings=wandb.Settings(_disable_stats=True, start_method="thread",
                                         console="off"))
for epoch in range(wandb.config.epochs):
    wandb.log({"loss": 1.0 / (epoch + 1), "epoch": epoch})
wandb.summary["best"] = 1.0
print(run.id)
wandb.finish()
"""


def test_wandb_style_script_records_what_it_was_given(job):
    rid = ok(run_py(job, TRAIN, "--lr", "0.5")).strip()
    api = localtrack.Api(job / "store")
    stored = api.run(f"vision-team/mnist/{rid}")  # W&B's entity/project/id
    assert (stored.entity, stored.name, stored.tags, stored.group, stored.job_type, stored.notes) \
        == ("vision-team", "baseline", ["cnn", "v1"], "sweep-a", "train", "first try")
    assert stored.config == {"lr": 0.5, "epochs": 3, "out": "store"}  # api_key excluded
    assert stored.state == "finished" and stored.last_step == 2
    assert [r.id for r in api.runs("vision-team/mnist")] == [rid]
    shown = subprocess.run([sys.executable, "-m", "localtrack", "show", f"vision-team/mnist/{rid}",
                            "--dir", str(job / "store")], capture_output=True, text=True,
                           check=True).stdout
    assert "entity   vision-team" in shown


RESUME = """
import argparse, localtrack as wandb
parser = argparse.ArgumentParser()
parser.add_argument("--start_epoch", type=int, default=0)
parser.add_argument("--num_epochs", type=int, default=4)
args = parser.parse_args()
wandb.init()
wandb.config.update(args)
for i in range(args.start_epoch, args.start_epoch + args.num_epochs):
    wandb.log({"loss": 10 / (i + 1)})
print(wandb.run.resumed, wandb.run.step)
"""


def test_wandb_resume_variables_continue_the_run(job):
    # W&B's resume example: the first start names the run, the second resumes it.
    assert ok(run_py(job, RESUME, env={"WANDB_RUN_ID": "myrun1"})).split() == ["False", "4"]
    again = run_py(job, RESUME, "--start_epoch=4",
                   env={"WANDB_RESUME": "allow", "WANDB_RUN_ID": "myrun1"})
    assert ok(again).split() == ["True", "8"]
    runs = localtrack.Api(job / "localtrack-runs").runs()
    assert [r.path for r in runs] == ["uncategorized/myrun1"]
    assert runs[0].last_step == 7 and runs[0].config == {"start_epoch": 4, "num_epochs": 4}
    assert [e["event"] for e in runs[0].events] == ["started", "finished", "resumed", "finished"]


def test_localtrack_variables_win_over_wandb_ones(job):
    out = ok(run_py(job, RESUME, env={
        "WANDB_RUN_ID": "w", "LOCALTRACK_RUN_ID": "lt", "WANDB_PROJECT": "wp",
        "LOCALTRACK_DIR": str(job / "lt-store"), "WANDB_DIR": str(job / "w-store")}))
    assert out.split() == ["False", "4"]
    assert [r.path for r in localtrack.Api(job / "lt-store").runs()] == ["wp/lt"]
    assert not (job / "w-store").exists()


def test_wandb_variables_fill_what_init_leaves_out(job):
    env = {"WANDB_PROJECT": "proj", "WANDB_ENTITY": "team", "WANDB_DIR": str(job / "s"),
           "WANDB_NAME": "nm", "WANDB_NOTES": "a note", "WANDB_TAGS": "a, b,,c",
           "WANDB_RUN_GROUP": "g", "WANDB_JOB_TYPE": "eval", "WANDB_MODE": "offline"}
    ok(run_py(job, "import localtrack as wandb\nwandb.init(job_type='train')\n", env=env))
    (stored,) = localtrack.Api(job / "s").runs("proj")
    assert (stored.entity, stored.name, stored.notes, stored.tags, stored.group, stored.job_type) \
        == ("team", "nm", "a note", ["a", "b", "c"], "g", "train")  # the argument wins


DISABLED = """
import localtrack as wandb
run = wandb.init(project="p", config={"a": 1})
run.log({"x": 1.0}, commit=False)
wandb.log()
run.config.update({"b": 2}, allow_val_change=True)
run.summary["s"] = 1
print(isinstance(run, wandb.Run), run.step, dict(run.config), run.state)
run.finish()
"""


def test_wandb_mode_disabled_writes_nothing(job):
    out = ok(run_py(job, DISABLED, env={"WANDB_MODE": "disabled"}))
    assert out.split() == ["True", "1", "{'a':", "1,", "'b':", "2}", "disabled"]
    assert sorted(p.name for p in job.iterdir()) == ["train.py"]


def test_a_disabled_run_redefines_every_public_member_of_run():
    # DisabledRun skips Run.__init__ (it opens the store): an inherited method would fail.
    public = {n for n in dir(localtrack.Run) if not n.startswith("_")}
    assert public <= set(vars(_session.DisabledRun)), public - set(vars(_session.DisabledRun))


@pytest.mark.parametrize("mode", ["online", "offline", "dryrun", "run"])  # "shared": test_shared.py
def test_wandb_modes_that_log_write_the_local_store(store, mode):
    run = localtrack.init(project="p", dir=store, mode=mode)  # type: ignore[arg-type]
    run.log({"a": 1})
    run.finish()
    assert localtrack.Api(store).run(f"p/{run.id}").last_step == 0


@pytest.mark.parametrize("name, content", [
    pytest.param("cfg.yaml", "lr: 0.1\nlayers: [64, 32]\nopt: {name: adam}\n", id="plain-yaml"),
    pytest.param("cfg.yaml", "wandb_version: 1\nlr:\n  desc: learning rate\n  value: 0.1\n"
                 "layers:\n  value: [64, 32]\nopt:\n  value: {name: adam}\n", id="wandb-yaml"),
    pytest.param("cfg.json", '{"lr": 0.1, "layers": [64, 32], "opt": {"name": "adam"}}', id="json"),
])
def test_config_from_a_file(job, name, content):
    (job / name).write_text(content)
    ok(run_py(job, f"""
        import localtrack as wandb
        wandb.init(project="p", dir="s", config={name!r})
        assert wandb.config.lr == 0.1, dict(wandb.config)
        """))
    (stored,) = localtrack.Api(job / "s").runs()
    assert stored.config == {"lr": 0.1, "layers": [64, 32], "opt": {"name": "adam"}}


def test_config_paths_variable_overrides_the_scripts_config(job):
    (job / "a.yaml").write_text("lr: 0.5\n")
    (job / "b.yaml").write_text("bs: 64\n")
    ok(run_py(job, "import localtrack as wandb\n"
                        "wandb.init(dir='s', config={'lr': 0.1, 'epochs': 2})\n",
              env={"WANDB_CONFIG_PATHS": "a.yaml,b.yaml"}))
    (stored,) = localtrack.Api(job / "s").runs()
    assert stored.config == {"lr": 0.5, "epochs": 2, "bs": 64}


def test_config_objects_and_key_filters(store):
    class Hparams:
        def __init__(self) -> None:
            self.lr, self.depth = 0.1, 3

    run = localtrack.init(project="p", dir=store, config=Hparams(), config_include_keys=["lr"])
    assert dict(run.config) == {"lr": 0.1}
    run.config.update(Hparams(), allow_val_change=True)  # a flag, not a key
    assert dict(run.config) == {"lr": 0.1, "depth": 3}
    run.finish()
    with pytest.raises(UsageError, match="not both"):
        localtrack.init(project="p", dir=store, config={"a": 1}, config_include_keys=["a"],
                        config_exclude_keys=["b"])
    with pytest.raises(UsageError, match="nope.yaml"):
        localtrack.init(project="p", dir=store, config="nope.yaml")


def test_unknown_argument_is_a_usage_error_naming_it(job):
    proc = run_py(job, """
        import localtrack as wandb
        try:
            wandb.init(project="p", jobtype="train")
        except wandb.LocaltrackError as exc:
            print(type(exc).__name__, isinstance(exc, TypeError), exc)
        """)
    out = ok(proc)
    assert out.startswith("UnknownArgumentError True init() got an unknown argument 'jobtype'")
    assert "did you mean 'job_type'?" in out
    assert sorted(p.name for p in job.iterdir()) == ["train.py"]  # nothing written


def test_every_argument_wandb_init_takes_is_accepted(store):
    run = localtrack.init(project="p", dir=store, entity="e", id="r1", name="n", notes="x",
                          tags=("t",), config={"a": 1}, config_exclude_keys=None,
                          config_include_keys=None, allow_val_change=True, group="g",
                          job_type="j", mode="online", force=False, reinit="finish_previous",
                          resume="allow", resume_from=None, fork_from=None, save_code=True,
                          tensorboard=False, sync_tensorboard=True, monitor_gym=True, magic=True,
                          anonymous="allow", settings={"_disable_stats": True, "x_label": "a"})
    assert run.resumed is False and dict(run.config) == {"a": 1}
    run.finish()


def test_settings_give_what_the_arguments_leave_out(store):
    settings = localtrack.Settings(run_name="from-settings", project="sp", run_tags=("a",),
                                   root_dir=str(store), mode="offline", console="off")
    settings.update({"run_group": "g"})
    assert settings.run_name == "from-settings" and settings.run_notes is None
    run = localtrack.init(settings=settings, name="from-arg")
    run.finish()
    stored = localtrack.Api(store).run(f"sp/{run.id}")
    assert (stored.name, stored.tags, stored.group) == ("from-arg", ["a"], "g")
    run = localtrack.init(dir=store, settings={"mode": "disabled", "run_id": "d1"})
    assert run.state == "disabled" and run.id == "d1"
    run.finish()


def test_reinit_modes(store):
    first = localtrack.init(project="p", dir=store)
    assert localtrack.init(project="p", dir=store) is first  # W&B's default: return_previous
    assert localtrack.init(project="other", dir=store, reinit=False) is first
    with pytest.raises(UsageError, match="Cannot resume a run while run p/"):
        localtrack.init(project="p", dir=store, id="x", resume="must")
    side = localtrack.init(project="p", dir=store, reinit="create_new")
    assert side is not first and localtrack.run is first and side.state == "running"
    side.log({"s": 1})
    third = localtrack.init(project="p", dir=store, reinit=True)  # finishes every active run
    assert first.state == side.state == "finished" and localtrack.run is third
    third.finish()
    assert localtrack.run is None
    lonely = localtrack.init(project="p", dir=store, reinit="create_new")
    assert localtrack.run is None  # as W&B: create_new never becomes the module's run
    lonely.finish()
    with pytest.raises(UsageError, match="reinit='bogus'"):
        localtrack.init(project="p", dir=store, reinit="bogus")  # type: ignore[arg-type]


METRICS = """
import localtrack as wandb
wandb.init(project="p", dir="s")
for i in range(5):
    wandb.log({"loss": 1.0 / (i + 1)}, commit=False)
    if i % 2 == 0:
        wandb.log({"val_acc": 0.5 + i}, commit=False)
    wandb.log()                    # commit the step's values
wandb.log(commit=True)             # nothing open: no step
print(wandb.run.step)
"""


def test_log_without_arguments_commits_the_step(job):
    assert ok(run_py(job, METRICS)).split() == ["5"]
    (stored,) = localtrack.Api(job / "s").runs()
    rows = stored.history_table().to_pylist()
    assert [r["_step"] for r in rows] == [0, 1, 2, 3, 4]  # the rows of a step are one
    assert [r["val_acc"] for r in rows] == [0.5, None, 2.5, None, 4.5]
    assert stored.last_step == 4 and stored.summary == {"loss": 0.2, "val_acc": 4.5}


def test_wandb_silent_quiets_init(job):
    code = "import localtrack as wandb\nwandb.init(dir='s')\nwandb.init(dir='s')\n"
    assert "returns the active run" in ok_err(run_py(job, code))
    assert ok_err(run_py(job, code, env={"WANDB_SILENT": "true"})) == ""


def ok_err(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_init_types_what_wandb_documents():
    hints = typing.get_type_hints(localtrack.init)
    assert hints["reinit"] == _settings.Reinit
    assert {"shared", "dryrun", "online", "offline", "disabled"} == set(typing.get_args(_settings.Mode))
    assert issubclass(UnknownArgumentError, TypeError)


def test_a_sweep_job_gets_its_own_run_while_another_is_active(store):
    outer = localtrack.init(project="p", dir=store)
    sweep_id = localtrack.sweep({"method": "grid", "parameters": {"lr": {"values": [0.1]}}},
                                project="p", dir=store)
    seen = []

    def train() -> None:
        run = localtrack.init()  # return_previous would hand it the outer run
        seen.append((run.id, dict(run.config)))
        run.log({"loss": 1.0})

    localtrack.agent(sweep_id, function=train, project="p", dir=store)
    assert len(seen) == 1 and seen[0][0] != outer.id and seen[0][1] == {"lr": 0.1}
    assert outer.state == "finished" and localtrack.run is None


def test_init_arguments_are_checked_even_when_the_active_run_is_returned(store):
    first = localtrack.init(project="p", dir=store)
    with pytest.raises(UsageError, match="Invalid mode='bogus'"):
        localtrack.init(project="p", dir=store, mode="bogus")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="key 'f' in a new run in project 'p'"):
        localtrack.init(project="p", dir=store, config={"f": object()})
    assert localtrack.init(project="p", dir=store) is first and first.state == "running"
