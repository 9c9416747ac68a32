"""Real W&B scripts (issue 16): the public training scripts re-created in tests/wandb_scripts/
(each names its source) run with ``import localtrack as wandb`` in a subprocess, and the run
they leave on disk is the one W&B would have recorded.

A script that calls what localtrack does not have yet is ``xfail(strict=True)`` with the call
in the reason: when the call lands, the script passes, the suite fails, and the mark must go
(with the count in the README's "Coming from W&B").

The compatibility page, docs/wandb.md, is checked here too: its rows against the code.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import localtrack

SCRIPTS = Path(__file__).parent / "wandb_scripts"


def has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


# What each script's W&B original imports where the copy here imports localtrack.
ORIGINAL_IMPORTS = {
    "import localtrack as wandb": "import wandb",
    "from localtrack.integrations.lightgbm import": "from wandb.lightgbm import",
    "from localtrack.integrations.keras import": "from wandb.integration.keras import",
    "from localtrack.integrations.lightning import WandbLogger":
        "from lightning.pytorch.loggers import WandbLogger",
}
SHIM = Path(localtrack.__file__).resolve().parent / "_shim"


def run_script(cwd: Path, name: str, *args: str, original: bool = False) -> localtrack.Api:
    """Run a script of the set; ``original``: with W&B's own imports back (``import wandb``,
    its integrations' and Lightning's), under the wandb shim."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "WANDB_"))}
    env["KERAS_BACKEND"] = "torch"  # where W&B's Keras scripts run on TensorFlow
    path = SCRIPTS / name
    if original:
        text = path.read_text()
        for ours, theirs in ORIGINAL_IMPORTS.items():
            text = text.replace(ours, theirs)
        assert "localtrack" not in "\n".join(
            line for line in text.splitlines() if not line.startswith("#")), name
        path = cwd / name
        path.write_text(text)
        env["PYTHONPATH"] = os.pathsep.join([str(SHIM), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, str(path), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Dropped a log()" not in proc.stderr, proc.stderr
    return localtrack.Api(cwd / "localtrack-runs")


def steps(run: Any, key: str) -> list[int]:
    return [r["_step"] for r in run.history_table().to_pylist() if r.get(key) is not None]


def values(run: Any, key: str) -> list[Any]:
    return [r[key] for r in run.history_table().to_pylist() if r.get(key) is not None]


def only_run(api: localtrack.Api, project: str) -> Any:
    runs = api.runs(project)
    assert len(runs) == 1, [r.path for r in runs]
    assert runs[0].state == "finished"
    return runs[0]


def nanogpt(api: localtrack.Api) -> None:
    run = only_run(api, "owt")
    assert run.name == "gpt2" and run.config["batch_size"] == 4
    assert run.config["wandb_project"] == "owt" and run.config["learning_rate"] == 6e-4
    assert values(run, "iter") == [0, 4, 8, 12] and steps(run, "iter") == [0, 1, 2, 3]
    for key in ("train/loss", "val/loss", "lr", "mfu"):
        assert steps(run, key) == [0, 1, 2, 3], key


def group_and_resume(api: localtrack.Api) -> None:
    run = only_run(api, "uncategorized")
    assert (run.group, run.job_type) == ("g7", "train")
    assert run.config == {"group_id": "g7", "worker_index": 0, "learning_rate": 0.9,
                          "momentum": 0.8, "job_type": "training"}
    assert values(run, "epoch") == [0, 1, 2, 3, 4] and steps(run, "train/acc") == [0, 1, 2, 3, 4]


def lightgbm_regression(api: localtrack.Api) -> None:
    run = only_run(api, "uncategorized")
    assert run.config["num_leaves"] == 31 and run.config["metric"] == ["rmse", "l2", "l1", "huber"]
    best = run.summary["best_iteration"]
    # early stopping after 5 rounds without improvement; LightGBM counts best_iteration from 1
    assert steps(run, "validation_rmse") == list(range(best + 5))
    for key in ("validation_l2", "validation_l1", "validation_huber", "iteration"):
        assert steps(run, key) == list(range(best + 5)), key
    assert run.summary["best_score"]["validation_rmse"] == values(run, "validation_rmse")[best - 1]
    assert len(run.summary["feature_importance"]) == 28
    # log_summary(save_model_checkpoint=True): the model at its best iteration
    [model] = api.artifacts(name=f"uncategorized/model_{run.id}")
    assert model.aliases == ["latest", "best"]
    assert [f.path for f in model.files()] == [f"model_ckpt_{best}.txt"]
    assert run.summary["validation_rmse"] == {"min": min(values(run, "validation_rmse"))}


def keras_metrics_logger(api: localtrack.Api) -> None:
    run = only_run(api, "uncategorized")
    assert run.config == {"bs": 12}
    for key in ("epoch", "loss", "accuracy", "top@5_accuracy", "val_loss", "val_accuracy",
                "learning_rate"):
        assert steps(run, f"epoch/{key}") == [0, 1], key


def xgboost_dermatology(api: localtrack.Api) -> None:
    run = only_run(api, "uncategorized")
    assert run.config["num_class"] == 6 and "Error Rate" in run.summary
    assert len(steps(run, "train-mlogloss")) == 5


def pytorch_cnn_mnist(api: localtrack.Api) -> None:
    run = only_run(api, "uncategorized")
    assert run.config["lr"] == 0.01 and run.config["log_interval"] == 2
    assert steps(run, "Test Accuracy") == [0, 1] and steps(run, "Examples") == [0, 1]
    examples = run.media("Examples")  # a list of wandb.Image per epoch
    assert [step for step, _ in examples] == [0, 1] and all(len(imgs) > 0 for _, imgs in examples)


def numpy_housing(api: localtrack.Api) -> None:
    run = only_run(api, "numpy-housing-demo")
    assert run.config == {"lr": 0.000001, "epochs": 1}
    assert steps(run, "Loss") == list(range(40))
    assert [f.name for f in run.files()] == ["weights.npy"]  # wandb.save("weights.npy")


def ddp_log_rank0(api: localtrack.Api) -> None:
    run = only_run(api, "ddp")
    assert run.entity == "team"
    assert steps(run, "epoch") == [4, 9] and steps(run, "loss") == [4, 9]
    assert steps(run, "batch_loss") == [0, 1, 2, 3, 5, 6, 7, 8]


def launch_quickstart(api: localtrack.Api) -> None:
    run = only_run(api, "uncategorized")
    assert run.config == {"learning_rate": 0.0001, "batch_size": 8, "epochs": 2}
    assert steps(run, "train/loss") == [0] and steps(run, "train/predictions") == [1, 2]
    tables = run.media("train/predictions")
    assert [step for step, _ in tables] == [1, 2]
    assert all(isinstance(t, localtrack.Table) and t.data for _, t in tables)


def sweep_quickstart(api: localtrack.Api) -> None:
    runs = api.runs("my-first-sweep")
    assert len(runs) == 3 and all(r.state == "finished" for r in runs)
    for run in runs:
        assert 0.01 <= run.config["x"] <= 0.1 and run.config["y"] in (1, 3, 7)
        assert values(run, "score") == [pytest.approx(run.config["x"] ** 3 + run.config["y"])]


def lightning_logger_media(api: localtrack.Api) -> None:
    # Lightning's own WandbLogger (the original script, under the shim) names the project
    # lightning_logs when none is given, as it does with W&B; localtrack's uses W&B's default
    project = "lightning_logs" if api.runs("lightning_logs") else "uncategorized"
    run = only_run(api, project)
    assert run.config["lr"] == 0.001 and run.config["n_layer_2"] == 256  # save_hyperparameters
    assert (run.config["dataset"], run.config["val_size"], run.config["batch_size"]) == (
        "random-28x28", 32, 16)
    # Lightning's own logger logs its step as trainer/global_step and lets W&B count _step
    # (each log() a step, as with W&B); localtrack's logs at Lightning's step
    def at(key: str) -> list[int]:
        if project == "uncategorized":
            return steps(run, key)
        return [int(r["trainer/global_step"]) for r in run.history_table().to_pylist()
                if r.get(key) is not None]

    assert at("train_loss") == [1, 3, 5, 7]  # log_every_n_steps=2, 4 batches an epoch
    assert at("val_accuracy") == [3, 7]
    assert run.summary["val_accuracy"] == {"max": max(values(run, "val_accuracy"))}
    # the first validation batch of the sanity check and of each epoch (at Lightning's step
    # with localtrack's logger; Lightning's own logs them with no step, at W&B's next one)
    images, tables = run.media("sample_images"), run.media("sample_table")
    assert len(images) == 3 and all(len(imgs) == 16 for _, imgs in images)
    if project == "uncategorized":
        assert [s for s, _ in images] == [0, 3, 7] and [s for s, _ in tables] == [0, 3, 7]
    assert len(tables) == 3
    for _, table in tables:
        assert table.columns == ["image", "ground truth", "prediction"] and len(table.data) == 16
        assert all(row[0].size == (28, 28) and row[1] in range(10) for row in table.data)
    assert any(key.startswith("gradients/layer_1") for key in run.history_table().column_names)
    versions = api.artifacts(name=f"{project}/model-{run.id}")  # log_model="all"
    assert versions and all(v.type == "model" for v in versions)
    assert "best" in api.artifact(f"{project}/model-{run.id}:best").aliases


def keras_checkpoint_eval(api: localtrack.Api) -> None:
    run = only_run(api, "uncategorized")
    assert run.config == {"hyper": "parameter"}
    assert steps(run, "epoch/val_accuracy") == [0, 1]
    [(step, data)] = run.media("val_data")
    assert step == 0 and data.columns == ["idx", "image", "label"] and len(data.data) == 12
    tables = run.media("eval_data")  # beside each epoch's metrics
    assert [s for s, _ in tables] == [0, 1]
    for epoch, (_, table) in enumerate(tables):
        assert [row[:2] for row in table.data] == [[epoch, i] for i in range(12)]
        assert [row[3] for row in table.data] == [row[2] for row in data.data]  # the labels
        assert all(row[2].size == (8, 8) and row[4] in (0, 1, 2) for row in table.data)
    versions = api.artifacts(name=f"uncategorized/run_{run.id}_model")
    assert [v.aliases for v in versions] == [["epoch_0"], ["latest", "epoch_1"]]
    assert all([f.path for f in v.files()] == ["models.keras"] for v in versions)


def missing(call: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"localtrack has no {call} yet")


def needs(*modules: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not has(*modules), reason=f"needs {', '.join(modules)} (.ci/run "
                              "installs torch and localtrack[integrations])")


# (script, its arguments, the check of the run it leaves, marks)
CASES: list[tuple[str, tuple[str, ...], Callable[[localtrack.Api], None],
                  list[pytest.MarkDecorator]]] = [
    ("nanogpt_train.py", (), nanogpt, [needs("torch")]),
    ("group_and_resume_train.py", ("--group_id", "g7"), group_and_resume, []),
    ("lightgbm_regression.py", (), lightgbm_regression, [needs("lightgbm")]),
    ("keras_metrics_logger.py", (), keras_metrics_logger, [needs("keras", "torch")]),
    ("xgboost_dermatology.py", (), xgboost_dermatology, [needs("xgboost")]),
    ("pytorch_cnn_mnist.py", (), pytorch_cnn_mnist,
     [needs("torch")]),
    ("numpy_housing.py", (), numpy_housing, []),
    ("ddp_log_rank0.py", (), ddp_log_rank0, [needs("torch")]),
    ("launch_quickstart.py", (), launch_quickstart,
     [needs("torch")]),
    ("sweep_quickstart.py", (), sweep_quickstart, []),
    ("keras_checkpoint_eval.py", (), keras_checkpoint_eval, [needs("keras", "torch")]),
    ("lightning_logger_media.py", (), lightning_logger_media,
     [needs("lightning", "torchmetrics")]),
]


@pytest.mark.parametrize(("name", "args", "check"), [
    pytest.param(name, args, check, marks=marks, id=name.removesuffix(".py"))
    for name, args, check, marks in CASES])
def test_wandb_script_runs(tmp_path: Path, name: str, args: tuple[str, ...],
                           check: Callable[[localtrack.Api], None]) -> None:
    check(run_script(tmp_path, name, *args))


@pytest.mark.parametrize(("name", "args", "check"), [
    pytest.param(name, args, check, marks=marks, id=name.removesuffix(".py"))
    for name, args, check, marks in CASES])
def test_wandb_script_runs_as_written_under_the_shim(tmp_path: Path, name: str,
                                                     args: tuple[str, ...],
                                                     check: Callable[[localtrack.Api], None]) -> None:
    """The script exactly as W&B's source has it (``import wandb``, W&B's integration imports,
    Lightning's own WandbLogger), with the wandb shim on PYTHONPATH: the same run on disk."""
    check(run_script(tmp_path, name, *args, original=True))


def test_every_script_is_run_and_names_its_source() -> None:
    names = sorted(p.name for p in SCRIPTS.glob("*.py"))
    assert names == sorted(name for name, *_ in CASES)
    for name in names:
        text = (SCRIPTS / name).read_text()
        assert text.startswith("# Follows https://"), name
        lines = text.splitlines()
        assert "import localtrack as wandb" in lines, name
        assert not [line for line in lines if line.startswith(("import wandb", "from wandb"))], name


# The compatibility page (docs/wandb.md): each row's localtrack name exists when the row says
# same/local/ignored, and does not while it says "not yet".
DOC = Path(__file__).parent.parent / "docs" / "wandb.md"
PACKAGE = Path(localtrack.__file__).parent
STATUSES = {"same", "local", "ignored", "not yet", "never"}


def doc_rows() -> list[tuple[str, str, str]]:
    """(W&B, localtrack, status) of every table row of the page."""
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 4 and cells[2] != "status" \
                and not cells[0].startswith("---"):
            rows.append((cells[0], cells[1], cells[2]))
    return rows


def exists(name: str, scope: dict[str, Any]) -> bool:
    """Whether localtrack has ``name`` (the page's notation for its localtrack column)."""
    if name.startswith("$"):  # an environment variable the code reads (_settings._env adds
        # the WANDB_ prefix; tests/test_dropin.py runs scripts under these variables)
        spellings = (f'"{name[1:]}"', f'_env("{name[1:].removeprefix("WANDB_")}")')
        return any(s in p.read_text() for p in PACKAGE.rglob("*.py") for s in spellings)
    if name.startswith("localtrack.integrations."):  # read, not imported: no framework needed
        module, _, attr = name.removeprefix("localtrack.integrations.").partition(".")
        path = PACKAGE / "integrations" / f"{module}.py"
        if not path.exists() or not attr:
            return path.exists()
        return f'"{attr}"' in path.read_text().split("__all__ = [")[1].split("]")[0]
    if name == "wandb" or name.startswith("wandb."):  # a module of the wandb shim (read, not
        # imported: its framework may be missing here; tests/test_wandb_shim.py imports them)
        base = PACKAGE.joinpath("_shim", *name.split("."))
        return (base / "__init__.py").is_file() or base.with_suffix(".py").is_file()
    module = name.removeprefix("localtrack.")
    if module in localtrack._INTEGRATIONS:  # imported when named (tests/test_integrations.py
        # checks that in a subprocess); here, where its framework may be missing, read the file
        return (PACKAGE / "integrations" / f"{module}.py").exists()
    keyword = None
    if name.endswith("=)"):
        name, keyword = name[:-2].rsplit("(", 1)
    parts = name.split(".")
    obj = scope[parts[0]]
    try:
        for part in parts[1:]:
            obj = obj.run("p/done") if part == "run(p)" else getattr(obj, part)
    except AttributeError:
        return False
    if keyword is None:
        return True
    import inspect

    return keyword in inspect.signature(obj).parameters


def test_the_compatibility_page_matches_the_code(tmp_path: Path) -> None:
    rows = doc_rows()
    statuses = {status for *_, status in rows}
    # every status is one of the page's; "not yet" may have no row left (issue 16's last landed)
    assert len(rows) > 80 and STATUSES - {"not yet"} <= statuses <= STATUSES
    localtrack.init(project="p", id="done", dir=tmp_path).finish()
    run = localtrack.init(project="p", id="live", dir=tmp_path)
    scope = {"localtrack": localtrack, "run": run, "Api()": localtrack.Api(tmp_path)}
    wrong = []
    try:
        for wandb_call, local, status in rows:
            assert status in STATUSES, (wandb_call, status)
            if status == "never":
                assert local == "—", wandb_call
                continue
            name = local.strip("`")
            assert local == f"`{name}`", (wandb_call, local)
            found = exists(name, scope)
            if found != (status != "not yet"):
                wrong.append(f"{wandb_call}: {name} {'exists' if found else 'is missing'}, "
                             f"the row says {status!r}")
    finally:
        run.finish()
    assert not wrong, "docs/wandb.md is out of date:\n" + "\n".join(wrong)
