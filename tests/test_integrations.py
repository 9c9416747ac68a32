"""Framework integrations (issue 16): Lightning's Logger and Transformers' TrainerCallback.

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


def script(cwd: Path, code: str, name: str = "train.py") -> list[str]:
    """Write ``code`` as a user's script in ``cwd``; return the command that runs it."""
    path = cwd / name
    path.write_text(textwrap.dedent(code))
    return [sys.executable, str(path)]


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "WANDB_"))}
    out.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
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
            " 'transformers', 'localtrack.integrations') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


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
    history = run.history()
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
    assert [s for s, _ in column(killed.history(), "train/loss")] == list(range(12))

    run_ok(tmp_path, cmd + ["20"], RUN_ID="req1")  # the requeued job: same id, last.ckpt
    run = localtrack.Api(tmp_path / "store").run("lit/req1")
    assert run.state == "finished" and run.config == {"lr": 0.1, "width": 3}
    # Lightning restarted at step 10 (the checkpoint): the steps after it were rewound, each
    # step is in the history once, and the lost ones are archived.
    assert [s for s, _ in column(run.history(), "train/loss")] == list(range(20))
    assert [(r["to"], r["from_step"]) for r in run.rewinds] == [(9, 11)]
    archived = [r["_step"] for r in run.history(include_rewound=True).to_pylist() if r["_rewound"]]
    assert archived == [10, 11]


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
                         save_strategy="no", use_cpu=True, learning_rate=0.01, run_name="tiny",
                         disable_tqdm=True)
mine = sys.argv[1] == "own-run"
if mine:  # the script's own run: the callback logs to it and leaves it open
    localtrack.init(project="hf", dir="store", config={"mine": 1})
callback = LocaltrackCallback(project="hf", dir="store")
Trainer(model=model, args=args, train_dataset=Data(), eval_dataset=Data(),
        callbacks=[callback]).train()
print(callback.run.path, callback.run.state)
if mine:
    localtrack.log({"after": 1.0})
    localtrack.finish()
"""


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
    history = run.history()
    assert [s for s, _ in column(history, "train/loss")] == [2, 4, 6]  # logging_steps=2
    assert [s for s, _ in column(history, "eval/loss")] == [3, 6]  # eval_steps=3
    assert run.summary["train_runtime"] > 0 and "train_loss" in run.summary
    # The callback's last row (step=6) leaves its step open, as W&B's log(step=) does: the
    # script's next log() joins it.
    assert [s for s, _ in column(history, "after")] == ([6] if how == "own-run" else [])
