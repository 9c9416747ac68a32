"""Framework integrations (issue 16): Lightning's Logger, Transformers' TrainerCallback, and
the Keras, XGBoost and LightGBM callbacks.

Each test runs a user's training script with the real framework and a tiny model built in the
script (no downloads) in a subprocess, then reads the run back with localtrack.Api.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import localtrack

_INSTALL = "pip install torch, then 'localtrack[integrations]' (.ci/run does)"
needs_lightning = pytest.mark.skipif(importlib.util.find_spec("lightning") is None,
                                     reason=f"needs lightning: {_INSTALL}")
needs_transformers = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                        reason=f"needs transformers: {_INSTALL}")
needs_keras = pytest.mark.skipif(importlib.util.find_spec("keras") is None
                                 or importlib.util.find_spec("torch") is None,
                                 reason=f"needs keras (torch backend): {_INSTALL}")
needs_xgboost = pytest.mark.skipif(importlib.util.find_spec("xgboost") is None,
                                   reason=f"needs xgboost: {_INSTALL}")
needs_lightgbm = pytest.mark.skipif(importlib.util.find_spec("lightgbm") is None,
                                    reason=f"needs lightgbm: {_INSTALL}")


def script(cwd: Path, code: str, name: str = "train.py") -> list[str]:
    """Write ``code`` as a user's script in ``cwd``; return the command that runs it."""
    path = cwd / name
    path.write_text(textwrap.dedent(code))
    return [sys.executable, str(path)]


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "WANDB_"))}
    out.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", KERAS_BACKEND="torch", **extra)
    return out


def run_ok(cwd: Path, cmd: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env(**extra), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Dropped a log()" not in proc.stderr, proc.stderr
    return proc


def column(table: object, key: str) -> list[tuple[int, float]]:
    """(step, value) of every row of a history table where ``key`` has a value."""
    rows = table.to_pylist()  # type: ignore[attr-defined]
    return [(r["_step"], r[key]) for r in rows if r.get(key) is not None]


def test_import_localtrack_loads_no_framework() -> None:
    code = ("import sys, localtrack; print([m for m in ('torch', 'lightning', 'pytorch_lightning',"
            " 'transformers', 'keras', 'xgboost', 'lightgbm', 'localtrack.integrations')"
            " if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@needs_keras
@needs_xgboost
@needs_lightgbm
def test_wandb_module_attributes_are_the_integrations(tmp_path: Path) -> None:
    """``wandb.xgboost.WandbCallback``, ``wandb.lightgbm.log_summary``, ``wandb.keras.*``:
    imported when first named."""
    code = """
    import sys
    import localtrack
    assert "xgboost" not in sys.modules
    import localtrack.integrations.keras, localtrack.integrations.lightgbm, localtrack.integrations.xgboost
    assert localtrack.xgboost is localtrack.integrations.xgboost
    assert localtrack.lightgbm is localtrack.integrations.lightgbm
    assert localtrack.keras is localtrack.integrations.keras
    assert localtrack.xgboost.wandb_callback().__class__ is localtrack.xgboost.WandbCallback
    print(sorted(m for m in ("keras", "lightgbm", "xgboost") if hasattr(localtrack, m)))
    """
    assert run_ok(tmp_path, script(tmp_path, code)).stdout.split() == ["['keras',", "'lightgbm',",
                                                                       "'xgboost']"]


def test_a_wandb_module_attribute_without_its_framework_says_what_to_install(tmp_path: Path) -> None:
    code = """
    import sys
    sys.modules["xgboost"] = None  # as if xgboost were not installed
    import localtrack
    try:
        localtrack.xgboost
    except localtrack.errors.UsageError as e:
        print(e)
    """
    out = run_ok(tmp_path, script(tmp_path, code)).stdout
    assert "localtrack.xgboost (W&B's wandb.xgboost) needs xgboost: pip install xgboost" in out


LIGHTNING = """
import os, sys, time
import torch
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from localtrack.integrations.lightning import LocaltrackLogger


class Tiny(L.LightningModule):
    def __init__(self, lr=0.1, width=3):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(width, 1)

    def loss(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.log("train/loss", loss)
        if self.global_step == int(os.environ.get("HANG_AT", -1)):
            open("hanging", "w").close()  # the test kills this process now
            for _ in range(1200):
                time.sleep(0.05)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.loss(batch))

    def test_step(self, batch, batch_idx):
        self.log("test/loss", self.loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


torch.manual_seed(0)
data = torch.utils.data.TensorDataset(torch.randn(32, 3), torch.randn(32, 1))
loader = torch.utils.data.DataLoader(data, batch_size=4)  # 8 steps an epoch
logger = LocaltrackLogger(project="lit", dir="store", id=os.environ.get("RUN_ID"), tags=["tiny"],
                          log_model={"all": "all", "1": True}.get(os.environ.get("LOG_MODEL", ""), False))
callbacks = []
if os.environ.get("RUN_ID"):  # a job that can be requeued: checkpoints every 5 steps
    callbacks.append(ModelCheckpoint(dirpath="ckpt", every_n_train_steps=5, save_last=True))
trainer = L.Trainer(max_steps=int(sys.argv[1]), logger=logger, log_every_n_steps=1,
                    val_check_interval=4, callbacks=callbacks, accelerator="cpu",
                    enable_progress_bar=False, enable_model_summary=False)
model = Tiny()
resume = "ckpt/last.ckpt" if os.path.exists("ckpt/last.ckpt") else None
trainer.fit(model, loader, loader, ckpt_path=resume)
if len(sys.argv) > 2:
    trainer.test(model, loader)
print(logger.experiment.path, logger.name, logger.version)
"""


@needs_lightning
def test_lightning_trainer_writes_a_run(tmp_path: Path) -> None:
    out = run_ok(tmp_path, [*script(tmp_path, LIGHTNING), "10", "test"]).stdout
    path, project, version = out.split()[-3:]
    run = localtrack.Api(tmp_path / "store").run(path)
    assert (project, version) == ("lit", run.id)
    assert run.state == "finished" and run.tags == ["tiny"]
    assert run.config == {"lr": 0.1, "width": 3}
    history = run.history_table()
    assert [step for step, _ in column(history, "train/loss")] == list(range(10))
    assert [step for step, _ in column(history, "val/loss")] == [3, 7]  # val_check_interval=4
    assert [step for step, _ in column(history, "test/loss")] == [10]  # test() after fit()
    # Lightning's own checkpoint goes to <default_root_dir>/<project>/<run id>, not the store.
    assert list((tmp_path / "lit" / run.id / "checkpoints").glob("*.ckpt"))


@needs_lightning
@pytest.mark.parametrize("log_model", ["all", "1"])
def test_lightning_log_model_stores_checkpoints_as_artifacts(tmp_path: Path, log_model: str) -> None:
    run_ok(tmp_path, [*script(tmp_path, LIGHTNING), "10"], RUN_ID="ckpts", LOG_MODEL=log_model)
    api = localtrack.Api(tmp_path / "store")
    versions = api.artifacts(name="lit/model-ckpts")
    # "all": each save (steps 5 and 10: the every-5-steps file and last.ckpt); True: at the end.
    assert len(versions) >= 1 and versions[-1].aliases[0] == "latest"
    assert all(v.type == "model" and v.logged_by().id == "ckpts" for v in versions)
    assert {f.path for v in versions for f in v.files()} == {"model.ckpt"}
    if log_model == "all":
        assert len(versions) >= 2
    out = Path(api.artifact("lit/model-ckpts:latest").download(root=tmp_path / "dl"))
    assert (out / "model.ckpt").stat().st_size > 0


@needs_lightning
def test_lightning_killed_and_restarted_from_its_checkpoint(tmp_path: Path) -> None:
    cmd = script(tmp_path, LIGHTNING)
    first = subprocess.Popen([*cmd, "20"], cwd=tmp_path, env=env(RUN_ID="req1", HANG_AT="12"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (tmp_path / "hanging").exists() and first.poll() is None:
        assert time.monotonic() < deadline, "the first job never reached step 12"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # as a node failure: no handler runs
    _, err = first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL, err
    killed = localtrack.Api(tmp_path / "store").run("lit/req1")
    assert killed.state != "finished"
    assert [s for s, _ in column(killed.history_table(), "train/loss")] == list(range(12))

    run_ok(tmp_path, cmd + ["20"], RUN_ID="req1")  # the requeued job: same id, last.ckpt
    run = localtrack.Api(tmp_path / "store").run("lit/req1")
    assert run.state == "finished" and run.config == {"lr": 0.1, "width": 3}
    # Lightning restarted at step 10 (the checkpoint): the steps after it were rewound, each
    # step is in the history once, and the lost ones are archived.
    assert [s for s, _ in column(run.history_table(), "train/loss")] == list(range(20))
    assert [(r["to"], r["from_step"]) for r in run.rewinds] == [(9, 11)]
    archived = [r["_step"] for r in run.history_table(include_rewound=True).to_pylist() if r["_rewound"]]
    assert archived == [10, 11]


@needs_lightning
def test_lightning_log_image_refuses_what_is_not_a_list_of_items(tmp_path: Path) -> None:
    code = """
    import numpy as np
    from localtrack.errors import InvalidValueError, UnsupportedTypeError
    from localtrack.integrations.lightning import WandbLogger
    logger = WandbLogger(project="lit", dir="store")
    img = np.zeros((4, 4), dtype=np.uint8)
    for images, kwargs, error in [(img, {}, UnsupportedTypeError),
                                  ([img, img], {"caption": ["one"]}, InvalidValueError),
                                  ([img], {"caption": "one"}, InvalidValueError)]:
        try:
            logger.log_image("samples", images, **kwargs)
        except error as e:
            print(e)
        else:
            raise SystemExit(f"log_image({images!r}, {kwargs}) was taken")
    """
    out = run_ok(tmp_path, script(tmp_path, code)).stdout.splitlines()
    assert out[0] == "log_image('samples', images=...) takes a list, got ndarray; pass [image] for one."
    assert all("give a list of one value per item (" in line for line in out[1:]) and len(out) == 3
    assert not (tmp_path / "store").exists()  # refused before any run was opened


FABRIC = """
import sys
import torch
import lightning as L
import localtrack
from localtrack.integrations.fabric import LocaltrackLogger, WandbLogger

assert WandbLogger is LocaltrackLogger
wandb_logger = WandbLogger(project="fab", dir="store", id="f1", log_model=False)
wandb_logger.log_hyperparams({"lr": 0.1, "batch_size": 4})
localtrack.define_metric("val_accuracy", summary="max")  # the logger opened the run: active
fabric = L.Fabric(accelerator="cpu", devices=1, loggers=[wandb_logger])
fabric.launch()
torch.manual_seed(0)
model = torch.nn.Linear(3, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model, optimizer = fabric.setup(model, optimizer)
loader = fabric.setup_dataloaders(torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(torch.randn(16, 3), torch.randn(16, 1)), batch_size=4))
for epoch in range(2):
    for x, y in loader:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        fabric.backward(loss)
        optimizer.step()
        fabric.log_dict({"loss": loss})  # no step: one per call
    fabric.log("val_accuracy", [0.5, 0.25][epoch])
fabric.log_dict({"at": 1.0}, step=20)
if sys.argv[1] == "finalize":
    fabric.logger.finalize("success")
    print(wandb_logger.experiment.state)
"""


@needs_lightning
@pytest.mark.parametrize("end", ["finalize", "exit"])
def test_lightning_fabric_logger_writes_a_run(tmp_path: Path, end: str) -> None:
    out = run_ok(tmp_path, [*script(tmp_path, FABRIC), end]).stdout
    assert out.split()[-1:] == (["finished"] if end == "finalize" else [])
    run = localtrack.Api(tmp_path / "store").run("fab/f1")
    assert run.state == "finished" and run.config == {"lr": 0.1, "batch_size": 4}
    history = run.history_table()
    assert [s for s, _ in column(history, "loss")] == [0, 1, 2, 3, 5, 6, 7, 8]
    assert [s for s, _ in column(history, "val_accuracy")] == [4, 9]
    assert run.summary["val_accuracy"] == {"max": 0.5}
    assert column(history, "at") == [(20, 1.0)]


TRANSFORMERS = """
import os, sys
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
import localtrack
from localtrack.integrations.transformers import LocaltrackCallback


class Data(torch.utils.data.Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"input_ids": torch.randint(0, 50, (8,), generator=g), "labels": i % 2}


torch.manual_seed(0)
model = BertForSequenceClassification(BertConfig(
    vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
    intermediate_size=16, max_position_embeddings=16, num_labels=2))
args = TrainingArguments(output_dir="out", report_to="none", max_steps=6, logging_steps=2,
                         per_device_train_batch_size=4, eval_strategy="steps", eval_steps=3,
                         save_strategy="steps" if len(sys.argv) > 2 else "no", save_steps=3,
                         use_cpu=True, learning_rate=0.01, run_name="tiny", disable_tqdm=True)
mine = sys.argv[1] == "own-run"
if mine:  # the script's own run: the callback logs to it and leaves it open
    localtrack.init(project="hf", dir="store", config={"mine": 1})
# "env": W&B's WANDB_LOG_MODEL / WANDB_WATCH (set by the test) instead of the arguments
more = {"log_model": sys.argv[2], "watch": "all"} if len(sys.argv) > 2 and sys.argv[2] != "env" else {}
callback = LocaltrackCallback(project="hf", dir="store", **more)
Trainer(model=model, args=args, train_dataset=Data(), eval_dataset=Data(),
        callbacks=[callback]).train()
print(callback.run.path, callback.run.state)
if mine:
    localtrack.log({"after": 1.0})
    localtrack.finish()
"""


@needs_transformers
@pytest.mark.parametrize("log_model, given", [("checkpoint", "argument"), ("end", "argument"),
                                              ("checkpoint", "environment")])
def test_transformers_log_model_stores_the_model_as_artifacts(tmp_path: Path, log_model: str,
                                                               given: str) -> None:
    """log_model= and watch= as arguments, or as W&B's WANDB_LOG_MODEL / WANDB_WATCH."""
    if given == "argument":
        done = run_ok(tmp_path, [*script(tmp_path, TRANSFORMERS), "callback-run", log_model])
    else:
        done = run_ok(tmp_path, [*script(tmp_path, TRANSFORMERS), "callback-run", "env"],
                      WANDB_LOG_MODEL=log_model.upper(), WANDB_WATCH="all")
    path = done.stdout.split()[-2]
    api = localtrack.Api(tmp_path / "store")
    run = api.run(path)
    assert run.config["model/num_parameters"] > 0
    versions = api.artifacts(name="hf/model-tiny")  # run_name="tiny" names it, as W&B's
    # "checkpoint": each checkpoint folder, then (as "end") the final model
    saves = [["checkpoint_global_step_3", "epoch_0.38"], ["checkpoint_global_step_6", "epoch_0.75"]]
    assert [v.aliases for v in versions] == [
        ["base_model"], *(saves if log_model == "checkpoint" else []), ["latest", "final_model"]]
    assert all(v.type == "model" and v.logged_by().id == run.id for v in versions)
    assert [f.path for f in versions[0].files()] == ["model_architecture.txt"]
    assert versions[0].metadata["initial_model"] is True
    final = {f.path for f in versions[-1].files()}
    assert {"config.json", "model.safetensors", "model_architecture.txt"} <= final
    assert versions[-1].metadata["final_model"] is True
    assert versions[-1].metadata["train_loss"] == run.summary["train_loss"]
    if log_model == "checkpoint":  # the checkpoint folders as Transformers wrote them
        assert all("trainer_state.json" in {f.path for f in v.files()} for v in versions[1:3])
    names = run.history_table().column_names  # watch="all": parameters and gradients
    assert any(k.startswith("parameters/") for k in names)
    assert any(k.startswith("gradients/") for k in names)


@needs_transformers
@pytest.mark.parametrize("how", ["callback-run", "own-run"])
def test_transformers_trainer_writes_a_run(tmp_path: Path, how: str) -> None:
    out = run_ok(tmp_path, [*script(tmp_path, TRANSFORMERS), how]).stdout
    path, state = out.split()[-2:]
    assert state == ("running" if how == "own-run" else "finished")
    run = localtrack.Api(tmp_path / "store").run(path)
    assert run.state == "finished"
    assert run.config["hidden_size"] == 8 and run.config["learning_rate"] == 0.01
    assert run.config.get("mine") == (1 if how == "own-run" else None)
    assert run.name == ("tiny" if how == "callback-run" else run.id)
    history = run.history_table()
    assert [s for s, _ in column(history, "train/loss")] == [2, 4, 6]  # logging_steps=2
    assert [s for s, _ in column(history, "eval/loss")] == [3, 6]  # eval_steps=3
    assert run.summary["train_runtime"] > 0 and "train_loss" in run.summary
    # The callback's last row (step=6) leaves its step open, as W&B's log(step=) does: the
    # script's next log() joins it.
    assert [s for s, _ in column(history, "after")] == ([6] if how == "own-run" else [])


KERAS = """
import os, sys
import numpy as np
import keras
from localtrack.integrations.keras import LocaltrackCallback, WandbMetricsLogger

keras.utils.set_random_seed(0)
x, y = np.random.rand(32, 3).astype("float32"), np.random.rand(32, 1).astype("float32")
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
run_id, start, end, freq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if run_id == "own":  # the script's own run, logged to before training
    import localtrack
    mine = localtrack.init(project="keras", dir="store", id="own")
    for i in range(3):
        mine.log({"data/rows": 32 + i})
callback = LocaltrackCallback(log_freq=freq if freq == "epoch" else int(freq), project="keras",
                              dir="store", id=run_id, resume="allow", initial_global_step=start * 4)
assert WandbMetricsLogger is LocaltrackCallback
model.fit(x, y, batch_size=8, epochs=end, initial_epoch=start, validation_data=(x, y),
          callbacks=[callback], verbose=0)
print(callback.run.path, callback.run.state)
"""


@needs_keras
def test_keras_fit_writes_a_run_and_continues_from_an_epoch(tmp_path: Path) -> None:
    cmd = script(tmp_path, KERAS)
    out = run_ok(tmp_path, [*cmd, "k1", "0", "3", "epoch"]).stdout
    assert out.split()[-1] == "finished"
    run = localtrack.Api(tmp_path / "store").run("keras/k1")
    history = run.history_table()
    assert column(history, "epoch/epoch") == [(0, 0), (1, 1), (2, 2)]
    for key in ("epoch/loss", "epoch/mae", "epoch/val_loss", "epoch/val_mae"):
        assert [s for s, _ in column(history, key)] == [0, 1, 2], key
    assert all(abs(v - 0.05) < 1e-6 for _, v in column(history, "epoch/learning_rate"))
    assert run.state == "finished"

    # log_freq=2: batch rows at the batch count (4 batches an epoch), epoch rows at their
    # epoch's last batch. Then fit(initial_epoch=1) on the same run: the rows after epoch 0
    # (steps 5..12) are rewound and archived, and epochs 1 and 2 are logged again.
    run_ok(tmp_path, [*cmd, "k2", "0", "3", "2"])
    assert column(localtrack.Api(tmp_path / "store").run("keras/k2").history_table(),
                  "epoch/epoch") == [(4, 0), (8, 1), (12, 2)]
    run_ok(tmp_path, [*cmd, "k2", "1", "3", "2"])
    run = localtrack.Api(tmp_path / "store").run("keras/k2")
    history = run.history_table()
    assert column(history, "epoch/epoch") == [(4, 0), (8, 1), (12, 2)]
    assert column(history, "batch/batch_step") == [(s, s) for s in (2, 4, 6, 8, 10, 12)]
    assert [s for s, _ in column(history, "batch/loss")] == [2, 4, 6, 8, 10, 12]
    assert [(r["to"], r["from_step"]) for r in run.rewinds] == [(5, 12)]
    archived = [r["_step"] for r in run.history_table(include_rewound=True).to_pylist() if r["_rewound"]]
    assert archived == [6, 8, 10, 12]
    assert run.state == "finished"


@needs_keras
def test_keras_epochs_follow_the_rows_of_the_scripts_own_run(tmp_path: Path) -> None:
    out = run_ok(tmp_path, [*script(tmp_path, KERAS), "own", "0", "2", "epoch"]).stdout
    assert out.split()[-1] == "running"  # the script's run: left open, finished at exit
    run = localtrack.Api(tmp_path / "store").run("keras/own")
    history = run.history_table()
    assert [s for s, _ in column(history, "data/rows")] == [0, 1, 2]
    assert column(history, "epoch/epoch") == [(3, 0), (4, 1)]
    assert run.state == "finished" and run.rewinds == []


@needs_transformers
def test_transformers_callback_refuses_a_bad_wandb_log_model(tmp_path: Path) -> None:
    code = """
    import os
    from localtrack.errors import InvalidValueError
    from localtrack.integrations.transformers import LocaltrackCallback
    for variable, value in (("WANDB_LOG_MODEL", "always"), ("WANDB_WATCH", "weights")):
        os.environ[variable] = value
        try:
            LocaltrackCallback()
        except InvalidValueError as e:
            print(e)
        else:
            raise SystemExit(f"{variable}={value} was taken")
        del os.environ[variable]
    LocaltrackCallback()  # unset: off
    """
    out = run_ok(tmp_path, script(tmp_path, code)).stdout.splitlines()
    assert out[0].startswith("WANDB_LOG_MODEL='always': log_model is one of 'false', 'end'"), out
    assert out[1].startswith("WANDB_WATCH='weights': watch is one of"), out


@needs_keras
def test_keras_callback_refuses_a_bad_log_freq(tmp_path: Path) -> None:
    code = """
    from localtrack.errors import InvalidValueError
    from localtrack.integrations.keras import LocaltrackCallback
    for bad in (0, -2, "epochs", True, 1.5):
        try:
            LocaltrackCallback(log_freq=bad)
        except InvalidValueError as e:
            print(e)
        else:
            raise SystemExit(f"log_freq={bad!r} was taken")
    """
    out = run_ok(tmp_path, script(tmp_path, code)).stdout.splitlines()
    assert len(out) == 5 and all("use 'epoch', 'batch' or a count of batches" in line for line in out)
    assert not (tmp_path / "localtrack-runs").exists()  # no run was opened


KERAS_CHECKPOINT = """
import sys
import numpy as np
import keras
import localtrack as wandb

keras.utils.set_random_seed(0)
x, y = np.random.rand(32, 3).astype("float32"), np.random.rand(32, 1).astype("float32")
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")


class Score(keras.callbacks.Callback):  # a monitored value that improves at epochs 0, 1, 3
    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = [3.0, 1.0, 2.0, 0.5][epoch]


if sys.argv[1] == "best":
    run = wandb.init(project="keras", dir="store", id="best")
    ckpt = wandb.keras.WandbModelCheckpoint("ckpt/model-{epoch:02d}.keras", monitor="score",
                                            mode="min", save_best_only=True)
    callbacks = [Score(), ckpt, wandb.keras.WandbMetricsLogger()]
else:
    ckpt = wandb.keras.WandbModelCheckpoint("ckpt/w.weights.h5", save_weights_only=True,
                                            save_freq=2, project="keras", dir="store", id="batches")
    callbacks = [Score(), ckpt]
model.fit(x, y, batch_size=8, epochs=4, callbacks=callbacks, verbose=0)
print(ckpt.run.path, ckpt.run.state)
"""


@needs_keras
def test_keras_model_checkpoint_logs_each_save_as_an_artifact_version(tmp_path: Path) -> None:
    cmd = script(tmp_path, KERAS_CHECKPOINT)
    # save_best_only: epochs 0, 1 and 3 improve the score, epoch 2 does not and logs nothing.
    assert run_ok(tmp_path, [*cmd, "best"]).stdout.split()[-2:] == ["keras/best", "running"]
    api = localtrack.Api(tmp_path / "store")
    versions = api.artifacts(name="keras/run_best_model")
    assert [(v.version, v.aliases) for v in versions] == [
        ("v0", ["epoch_0"]), ("v1", ["epoch_1"]), ("v2", ["latest", "best", "epoch_3"])]
    assert [[f.path for f in v.files()] for v in versions] == [
        ["model-01.keras"], ["model-02.keras"], ["model-04.keras"]]
    assert all(v.type == "model" and v.logged_by().id == "best" for v in versions)
    out = Path(api.artifact("keras/run_best_model:best").download(root=tmp_path / "dl"))
    assert (out / "model-04.keras").read_bytes() == (tmp_path / "ckpt" / "model-04.keras").read_bytes()
    run = api.run("keras/best")  # the metrics logger beside it wrote the script's run
    assert run.state == "finished"
    assert [s for s, _ in column(run.history_table(), "epoch/loss")] == [0, 1, 2, 3]

    # Weights every 2 batches (4 an epoch), no run active: the callback opens one and finishes it.
    assert run_ok(tmp_path, [*cmd, "batches"]).stdout.split()[-2:] == ["keras/batches", "finished"]
    versions = api.artifacts(name="keras/run_batches_model")
    assert [v.aliases[-1] for v in versions] == [f"epoch_{e}_batch_{b}" for e in range(4) for b in (1, 3)]
    assert versions[-1].aliases[0] == "latest" and api.run("keras/batches").state == "finished"
    assert {f.path for v in versions for f in v.files()} == {"w.weights.h5"}


KERAS_EVAL = """
import sys
import numpy as np
import keras
import localtrack as wandb

keras.utils.set_random_seed(0)
x = np.random.rand(6, 4).astype("float32")
y = np.array([0, 1, 2, 0, 1, 2])
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")


class ClfEval(wandb.keras.WandbEvalCallback):
    def __init__(self, validation_data, data_table_columns, pred_table_columns, **init_args):
        super().__init__(data_table_columns, pred_table_columns, **init_args)
        self.x, self.y = validation_data

    def add_ground_truth(self, logs=None):
        for idx, (row, label) in enumerate(zip(self.x, self.y)):
            self.data_table.add_data(idx, wandb.Image(np.tile(row, (4, 1))), label)

    def add_model_predictions(self, epoch, logs=None):
        preds = self.model.predict(self.x, verbose=0).argmax(axis=-1)
        ref = self.data_table_ref
        for idx in ref.get_index():
            self.pred_table.add_data(epoch, ref[idx][0], ref.data[idx][1], ref.data[idx][2],
                                     preds[idx])  # W&B's ref[row][column] and ref.data


how = sys.argv[1]
where = {"project": "keras", "dir": "store", "id": how}
if how != "alone":  # W&B's way: init() first; else the callback opens the run itself
    wandb.init(**where)
evals = ClfEval((x, y), ["idx", "image", "label"], ["epoch", "idx", "image", "label", "pred"],
                **(where if how == "alone" else {}))
metrics = [wandb.keras.WandbMetricsLogger()] if how != "alone" else []
callbacks = [evals, *metrics] if how == "eval-first" else [*metrics, evals]
model.fit(x, y, epochs=3, callbacks=callbacks, verbose=0)
print(evals.run.path, evals.run.state)
"""


@needs_keras
@pytest.mark.parametrize("how", ["eval-first", "eval-last", "alone"])
def test_keras_eval_callback_logs_its_tables(tmp_path: Path, how: str) -> None:
    out = run_ok(tmp_path, [*script(tmp_path, KERAS_EVAL), how]).stdout
    assert out.split()[-2:] == [f"keras/{how}", "running" if how != "alone" else "finished"]
    run = localtrack.Api(tmp_path / "store").run(f"keras/{how}")
    assert run.state == "finished"
    [(step, data)] = run.media("val_data")  # the ground truth, once, at the first step
    assert step == 0 and data.columns == ["idx", "image", "label"]
    assert [(r[0], r[2]) for r in data.data] == [(i, i % 3) for i in range(6)]
    assert all(r[1].size == (4, 4) for r in data.data)  # the images, read back as PIL images
    tables = run.media("eval_data")
    # a table of predictions per epoch, each at the step of that epoch's metrics row (whichever
    # callback comes first), or at a step of its own when it is alone
    assert [s for s, _ in tables] == [0, 1, 2]
    for epoch, (_, table) in enumerate(tables):
        assert table.columns == ["epoch", "idx", "image", "label", "pred"]
        assert [r[:2] for r in table.data] == [[epoch, i] for i in range(6)]
        assert all(r[4] in (0, 1, 2) for r in table.data)
    metrics = [s for s, _ in column(run.history_table(), "epoch/loss")]
    assert metrics == ([] if how == "alone" else [0, 1, 2])


@needs_keras
def test_keras_model_checkpoint_refuses_a_keras_before_3_10(tmp_path: Path) -> None:
    code = """
    import keras
    from localtrack.errors import UsageError
    from localtrack.integrations.keras import WandbModelCheckpoint
    del keras.callbacks.ModelCheckpoint._should_save_model  # as Keras 3.9 was: it decides inline
    try:
        WandbModelCheckpoint("m.keras")
    except UsageError as e:
        print(e)
    """
    out = run_ok(tmp_path, script(tmp_path, code)).stdout
    assert "WandbModelCheckpoint needs Keras 3.10 or later" in out and "pip install -U keras" in out


XGBOOST = """
import sys
import numpy as np
import xgboost as xgb
import localtrack
from localtrack.integrations.xgboost import LocaltrackCallback, WandbCallback

rng = np.random.default_rng(0)
x, y = rng.random((64, 4)), rng.random(64)
train, valid = xgb.DMatrix(x[:48], y[:48]), xgb.DMatrix(x[48:], y[48:])
params = {"max_depth": 2, "eta": 0.3, "objective": "reg:squarederror", "eval_metric": ["rmse", "mae"]}
if sys.argv[1] == "own-run":  # the script's run: the callback logs to it and leaves it open
    localtrack.init(project="xgb", dir="store", id="x1")
    callback = WandbCallback()
else:
    callback = LocaltrackCallback(project="xgb", dir="store", id="x1", resume="allow",
                                  log_model=sys.argv[1] != "cv")
if sys.argv[1] == "cv":  # the mean of 3 folds at each round
    xgb.cv(params, train, num_boost_round=int(sys.argv[2]), nfold=3, callbacks=[callback])
    print(callback.run.path, callback.run.state)
    sys.exit()
start = xgb.Booster(model_file="saved.json") if sys.argv[1] == "continue" else None
booster = xgb.train(params, train, num_boost_round=int(sys.argv[2]), evals=[(train, "train"),
                    (valid, "validation")], early_stopping_rounds=50, callbacks=[callback],
                    xgb_model=start, verbose_eval=False)
if sys.argv[1] != "continue":
    booster.save_model("saved.json")
print(callback.run.path, callback.run.state)
if sys.argv[1] == "own-run":
    localtrack.finish()
"""


@needs_xgboost
@pytest.mark.parametrize("how", ["callback-run", "own-run"])
def test_xgboost_train_writes_a_run_and_continues_a_saved_model(tmp_path: Path, how: str) -> None:
    cmd = script(tmp_path, XGBOOST)
    out = run_ok(tmp_path, [*cmd, how, "4"]).stdout
    assert out.split()[-1] == ("running" if how == "own-run" else "finished")
    run = localtrack.Api(tmp_path / "store").run("xgb/x1")
    assert run.state == "finished"
    assert run.config["learner"]["objective"]["name"] == "reg:squarederror"
    history = run.history_table()
    assert column(history, "epoch") == [(i, i) for i in range(4)]
    for key in ("train-rmse", "train-mae", "validation-rmse", "validation-mae"):
        assert [s for s, _ in column(history, key)] == [0, 1, 2, 3], key
    assert run.summary["best_iteration"] in range(4)
    assert set(run.summary["feature_importance"]) <= {"f0", "f1", "f2", "f3"}
    for key in ("train-rmse", "validation-mae"):  # define_metric: a loss's summary is its least
        assert run.summary[key] == {"min": min(v for _, v in column(history, key))}, key
    if how == "own-run":
        return
    [model] = localtrack.Api(tmp_path / "store").artifacts(name="xgb/x1_model.json")  # log_model
    assert model.type == "model" and [f.path for f in model.files()] == ["x1_model.json"]
    out = Path(model.download(root=tmp_path / "dl")) / "x1_model.json"
    assert xgb_rounds(out) == 4
    # Continued from the saved 4-round model for 3 rounds more: rounds 4..6 follow on.
    run_ok(tmp_path, [*cmd, "continue", "3"])
    run = localtrack.Api(tmp_path / "store").run("xgb/x1")
    assert column(run.history_table(), "epoch") == [(i, i) for i in range(7)]
    assert run.rewinds == [] and run.state == "finished"
    models = localtrack.Api(tmp_path / "store").artifacts(name="xgb/x1_model.json")
    assert [(m.version, m.aliases) for m in models] == [("v0", []), ("v1", ["latest"])]
    assert xgb_rounds(Path(models[1].download(root=tmp_path / "dl2")) / "x1_model.json") == 7


def xgb_rounds(path: Path) -> int:
    """The boosting rounds of a model XGBoost saved as JSON."""
    import json

    model = json.loads(path.read_text())["learner"]["gradient_booster"]["model"]
    return int(model["gbtree_model_param"]["num_trees"])


@needs_xgboost
def test_xgboost_cv_writes_the_folds_mean(tmp_path: Path) -> None:
    out = run_ok(tmp_path, [*script(tmp_path, XGBOOST), "cv", "3"]).stdout
    assert out.split()[-1] == "finished"
    run = localtrack.Api(tmp_path / "store").run("xgb/x1")
    assert run.config["learner"]["objective"]["name"] == "reg:squarederror"
    history = run.history_table()
    for key in ("epoch", "train-rmse", "train-mae", "test-rmse", "test-mae"):
        assert [s for s, _ in column(history, key)] == [0, 1, 2], key


LIGHTGBM = """
import sys
import numpy as np
import lightgbm as lgb
import localtrack
from localtrack.integrations.lightgbm import localtrack_callback, log_summary, wandb_callback

rng = np.random.default_rng(0)
x, y = rng.random((200, 4)), rng.random(200)
train = lgb.Dataset(x[:150], y[:150])
valid = lgb.Dataset(x[150:], y[150:], reference=train)
params = {"objective": "regression", "metric": ["l2", "l1"], "num_leaves": 4, "verbose": -1,
          "learning_rate": 0.2}
assert wandb_callback is localtrack_callback
first = sys.argv[1] == "first"
booster = lgb.train(params, train, num_boost_round=int(sys.argv[2]), valid_sets=[valid],
                    init_model=None if first else "saved.txt",
                    callbacks=[localtrack_callback(project="lgb", dir="store", id="g1",
                                                   resume="allow")])
booster.save_model("saved.txt")
log_summary(booster, save_model_checkpoint=True)
print(localtrack.run.path, localtrack.run.state)
if sys.argv[3] == "killed":
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)  # before finish(): the run stays unfinished
localtrack.finish()
"""


@needs_lightgbm
def test_lightgbm_train_writes_a_run_and_continues_a_saved_model(tmp_path: Path) -> None:
    cmd = script(tmp_path, LIGHTGBM)
    run_ok(tmp_path, [*cmd, "first", "5", "clean"])
    run = localtrack.Api(tmp_path / "store").run("lgb/g1")
    assert run.state == "finished" and run.config["num_leaves"] == 4
    history = run.history_table()
    assert column(history, "iteration") == [(i, i) for i in range(5)]
    assert [s for s, _ in column(history, "valid_0_l2")] == list(range(5))
    assert [s for s, _ in column(history, "valid_0_l1")] == list(range(5))
    assert run.summary["best_score"]["valid_0_l2"] == column(history, "valid_0_l2")[-1][1]
    assert set(run.summary["feature_importance"]) == {f"Column_{i}" for i in range(4)}
    for key in ("valid_0_l2", "valid_0_l1"):  # define_metric: an l1/l2's summary is its least
        assert run.summary[key] == {"min": min(v for _, v in column(history, key))}, key
    [model] = localtrack.Api(tmp_path / "store").artifacts(name="lgb/model_g1")
    # best_iteration 0 (no early stopping): the whole model, as W&B names it
    assert model.aliases == ["latest", "best"] and [f.path for f in model.files()] == ["model_ckpt_0.txt"]

    # Continued from the saved model for 3 rounds: iterations 5..7 follow on, same run.
    proc = subprocess.run([*cmd, "more", "3", "killed"], cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run = localtrack.Api(tmp_path / "store").run("lgb/g1")
    assert column(run.history_table(), "iteration") == [(i, i) for i in range(8)]
    assert run.state != "finished"
    models = localtrack.Api(tmp_path / "store").artifacts(name="lgb/model_g1")
    assert [(m.version, m.aliases) for m in models] == [("v0", []), ("v1", ["latest", "best"])]
    assert [f.path for f in models[1].files()] == ["model_ckpt_0.txt"]


@needs_lightgbm
def test_lightgbm_cv_writes_the_folds_mean_and_deviation(tmp_path: Path) -> None:
    code = """
    import numpy as np
    import lightgbm as lgb
    import localtrack
    from localtrack.integrations.lightgbm import wandb_callback

    localtrack.init(project="lgb", dir="store", id="cv")
    rng = np.random.default_rng(0)
    x, y = rng.random((90, 4)), rng.random(90)
    lgb.cv({"objective": "regression", "metric": ["l2", "auc"], "num_leaves": 4, "verbose": -1},
           lgb.Dataset(x, y > 0.5), num_boost_round=3, nfold=3, stratified=False,
           callbacks=[wandb_callback()])
    """
    run_ok(tmp_path, script(tmp_path, code))
    run = localtrack.Api(tmp_path / "store").run("lgb/cv")
    history = run.history_table()
    for key in ("iteration", "valid_l2-mean", "valid_l2-stdv", "valid_auc-mean", "valid_auc-stdv"):
        assert [s for s, _ in column(history, key)] == [0, 1, 2], key
    assert run.summary["valid_l2-stdv"] == column(history, "valid_l2-stdv")[-1][1]


KERAS_LEGACY = """
import sys
import numpy as np
import keras
import localtrack as wandb

keras.utils.set_random_seed(0)
x, y = np.random.rand(32, 3).astype("float32"), np.random.rand(32, 1).astype("float32")
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, name="dense")])
model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")


class Score(keras.callbacks.Callback):  # a monitored value that improves at epochs 0 and 1
    def on_epoch_end(self, epoch, logs=None):
        logs["val_score"] = [3.0, 1.0, 2.0, 1.5][epoch]
        if epoch == 1:  # the best epoch's weights, which the saved model must hold
            np.save("best-kernel.npy", keras.ops.convert_to_numpy(self.model.layers[0].kernel))


try:
    wandb.keras.WandbCallback()
except wandb.errors.UsageError as exc:
    print("no-run:", "localtrack.init() first" in str(exc))
run = wandb.init(project="keras", dir="store", id=sys.argv[1])
try:
    wandb.keras.WandbCallback(log_gradients=True, training_data=(x, y))
except wandb.errors.UsageError as exc:
    print("gradients:", "log_gradients" in str(exc))
weights_only = sys.argv[1] == "weights"
callback = wandb.keras.WandbCallback(  # W&B's usual arguments, the views' ones ignored here
    monitor="val_score", mode="min", save_weights_only=weights_only, log_weights=True,
    save_model=True, training_data=(x, y), validation_data=(x, y), labels=["y"], predictions=4,
    input_type=None, output_type=None, log_evaluation=True, log_batch_frequency=2 if
    weights_only else None, save_graph=True, compute_flops=True, verbose=1)
model.fit(x, y, batch_size=8, epochs=4, callbacks=[Score(), callback], verbose=0)
print(run.state, callback.best_epoch)
run.finish()
"""


@needs_keras
def test_keras_legacy_wandb_callback(tmp_path: Path) -> None:
    """W&B's legacy WandbCallback: `epoch` and Keras's logs per epoch at the run's steps, the
    best monitored value and its epoch in the summary, the best model saved with the run."""
    cmd = script(tmp_path, KERAS_LEGACY)
    out = run_ok(tmp_path, [*cmd, "model"]).stdout.split("\n")
    assert out[:3] == ["no-run: True", "gradients: True", "running 1"]
    api = localtrack.Api(tmp_path / "store")
    run = api.run("keras/model")
    history = run.history_table()
    assert column(history, "epoch") == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert column(history, "val_score") == [(0, 3.0), (1, 1.0), (2, 2.0), (3, 1.5)]
    assert [s for s, _ in column(history, "loss")] == [0, 1, 2, 3]
    assert run.summary["best_val_score"] == 1.0 and run.summary["best_epoch"] == 1
    assert [s for s, _ in run.histograms("parameters/dense.weights")] == [0, 1, 2, 3]
    assert [s for s, _ in run.histograms("parameters/dense.bias")] == [0, 1, 2, 3]
    assert [f.name for f in run.files()] == ["model-best.h5"]
    run.file("model-best.h5").download(root=tmp_path / "dl").close()
    import h5py  # a real HDF5 Keras model file, loadable by Keras

    kernels: list[object] = []
    with h5py.File(tmp_path / "dl" / "model-best.h5", "r") as h5:
        h5["model_weights"].visititems(lambda name, obj: kernels.append(obj[()])
                                       if name.endswith("kernel") else None)
    import numpy as np

    assert len(kernels) == 1 and np.array_equal(kernels[0], np.load(tmp_path / "best-kernel.npy"))

    # save_weights_only, and a row of the batch's logs every 2 batches (4 an epoch): W&B's
    # batch rows take steps of their own between the epochs' rows.
    run_ok(tmp_path, [*cmd, "weights"])
    run = api.run("keras/weights")
    history = run.history_table()
    assert [s for s, _ in column(history, "epoch")] == [2, 5, 8, 11]
    assert [s for s, _ in column(history, "loss")] == list(range(12))
    assert [f.name for f in run.files()] == ["model-best.weights.h5"]
