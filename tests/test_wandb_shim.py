"""localtrack's ``wandb`` shim (issue 16): code that imports ``wandb`` itself (Transformers'
``report_to="wandb"``, Lightning's own ``WandbLogger``, W&B's integration module paths) runs on
localtrack when ``localtrack wandb-shim`` is on PYTHONPATH, with no wandb installed.

Each case runs a user's script in a subprocess with the shim on PYTHONPATH and reads the run it
leaves on disk; a framework that is not installed skips its case.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import localtrack

from .test_integrations import LIGHTNING as LOCALTRACK_LOGGER_SCRIPT
from .test_integrations import TRANSFORMERS as LOCALTRACK_CALLBACK_SCRIPT

SHIM = Path(localtrack.__file__).resolve().parent / "_shim"
_INSTALL = "pip install torch, then 'localtrack[integrations]' (.ci/run does)"


def has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def needs(*modules: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not has(*modules), reason=f"needs {', '.join(modules)}: {_INSTALL}")


# The real wandb installed would shadow (or be shadowed by) the shim: these tests are about a
# machine without it, as localtrack's users have.
pytestmark = pytest.mark.skipif(has("wandb"), reason="the real wandb is installed here")


def env(shim: bool = True, **extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "WANDB_"))}
    path = [str(SHIM)] if shim else []
    out["PYTHONPATH"] = os.pathsep.join([*path, *filter(None, [os.environ.get("PYTHONPATH")])])
    out.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", KERAS_BACKEND="torch", **extra)
    return out


def run_script(cwd: Path, code: str, shim: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
    (cwd / "train.py").write_text(textwrap.dedent(code))
    proc = subprocess.run([sys.executable, "train.py"], cwd=cwd, env=env(shim, **extra),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Dropped a log()" not in proc.stderr, proc.stderr
    return proc


def column(run: localtrack.ApiRun, key: str) -> list[tuple[int, object]]:
    return [(r["_step"], r[key]) for r in run.history_table().to_pylist() if r.get(key) is not None]


# The tiny BERT and its random data, built as tests/test_integrations.py builds them.
TINY_BERT = LOCALTRACK_CALLBACK_SCRIPT.split("args = TrainingArguments(")[0]
TRANSFORMERS = TINY_BERT + """
args = TrainingArguments(output_dir="out", report_to="wandb", max_steps=6, logging_steps=2,
                         per_device_train_batch_size=4, eval_strategy="steps", eval_steps=3,
                         save_strategy="no", use_cpu=True, learning_rate=0.01, run_name="tiny",
                         disable_tqdm=True)
Trainer(model=model, args=args, train_dataset=Data(), eval_dataset=Data()).train()
import wandb
print(wandb.run.path)
"""


@needs("transformers", "torch")
def test_transformers_report_to_wandb_writes_a_run(tmp_path: Path) -> None:
    out = run_script(tmp_path, TRANSFORMERS, WANDB_PROJECT="hf", WANDB_LOG_MODEL="end").stdout
    api = localtrack.Api(tmp_path / "localtrack-runs")
    [run] = api.runs("hf")
    assert run.path == out.split()[-1] and run.state == "finished" and run.name == "tiny"
    assert run.config["learning_rate"] == 0.01 and run.config["hidden_size"] == 8
    assert run.config["id2label"] == {"0": "LABEL_0", "1": "LABEL_1"}  # int keys, as JSON's
    assert run.config["model/num_parameters"] > 0
    # W&B's callback logs train/global_step in each row, and charts every key against it
    assert [v for _, v in column(run, "train/global_step")] == [2, 3, 4, 6, 6, 6]
    assert [s for s, _ in column(run, "train/loss")] == [0, 2, 3]
    assert [s for s, _ in column(run, "eval/loss")] == [1, 4]
    assert run.metrics["*"] == {"step_metric": "train/global_step", "step_sync": True}
    assert run.summary["train_runtime"] > 0 and "train_loss" in run.summary
    versions = api.artifacts(name="hf/model-tiny")  # WANDB_LOG_MODEL=end
    assert [v.aliases for v in versions] == [["base_model"], ["latest", "final_model"]]
    assert all(v.type == "model" and v.logged_by().id == run.id for v in versions)
    assert {"config.json", "model.safetensors"} <= {f.path for f in versions[-1].files()}


# The tiny LightningModule of tests/test_integrations.py, logged by Lightning's own WandbLogger.
LIGHTNING = LOCALTRACK_LOGGER_SCRIPT.split("torch.manual_seed(0)")[0] + """
from lightning.pytorch.loggers import WandbLogger

torch.manual_seed(0)
data = torch.utils.data.TensorDataset(torch.randn(32, 3), torch.randn(32, 1))
loader = torch.utils.data.DataLoader(data, batch_size=4)  # 8 steps an epoch
logger = WandbLogger(project="lit", log_model=True, tags=["tiny"])
trainer = L.Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, accelerator="cpu",
                    enable_progress_bar=False, enable_model_summary=False)
trainer.fit(Tiny(), loader, loader)
import wandb
assert isinstance(logger.experiment, wandb.wandb_run.Run)
print(logger.experiment.path)
"""


@needs("lightning", "torch")
def test_lightnings_own_wandb_logger_writes_a_run_and_its_checkpoints(tmp_path: Path) -> None:
    out = run_script(tmp_path, LIGHTNING).stdout
    # WandbLogger's save_dir "." is W&B's dir: the store is ./localtrack-runs, as W&B's ./wandb
    api = localtrack.Api(tmp_path / "localtrack-runs")
    [run] = api.runs("lit")
    assert run.path == out.split()[-1] and run.state == "finished" and run.tags == ["tiny"]
    assert run.config == {"lr": 0.1, "width": 3}
    assert [v for _, v in column(run, "trainer/global_step")][:3] == [0, 1, 2]
    assert len(column(run, "train/loss")) == 16 and len(column(run, "val/loss")) == 2
    # log_model=True: the best checkpoint at the end, Lightning's file outside the store
    [model] = api.artifacts(name=f"lit/model-{run.id}")
    assert model.type == "model" and model.aliases == ["latest", "best"]
    assert [f.path for f in model.files()] == ["model.ckpt"]
    assert model.metadata["original_filename"] == "epoch=1-step=16.ckpt"
    assert (tmp_path / "lit" / run.id / "checkpoints" / "epoch=1-step=16.ckpt").is_file()


KERAS = """
import numpy as np
import keras
import wandb
from wandb.integration.keras import WandbMetricsLogger

wandb.init(project="k", config={"bs": 8})
keras.utils.set_random_seed(0)
x, y = np.random.rand(32, 3).astype("float32"), np.random.rand(32, 1).astype("float32")
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
model.fit(x, y, batch_size=wandb.config.bs, epochs=2, validation_data=(x, y),
          callbacks=[WandbMetricsLogger()], verbose=0)
wandb.log({"after": 1.0})
wandb.log({"after": 2.0})
wandb.finish()
"""


@needs("keras", "torch")
def test_a_keras_script_importing_wandb_writes_a_run(tmp_path: Path) -> None:
    run_script(tmp_path, KERAS)
    [run] = localtrack.Api(tmp_path / "localtrack-runs").runs("k")
    assert run.state == "finished" and run.config == {"bs": 8}
    for key in ("epoch/loss", "epoch/val_loss", "epoch/epoch"):
        assert [s for s, _ in column(run, key)] == [0, 1], key
    assert column(run, "after") == [(1, 1.0), (2, 2.0)]


@needs("accelerate", "torch")
def test_accelerates_wandb_tracker_writes_a_run(tmp_path: Path) -> None:
    run_script(tmp_path, """
        from accelerate import Accelerator
        acc = Accelerator(log_with="wandb", cpu=True)
        acc.init_trackers("acc", config={"lr": 0.1})
        for i in range(3):
            acc.log({"loss": 1.0 / (i + 1)}, step=i)
        acc.end_training()
    """)
    [run] = localtrack.Api(tmp_path / "localtrack-runs").runs("acc")
    assert run.state == "finished" and run.config == {"lr": 0.1}
    assert column(run, "loss") == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]

@pytest.mark.parametrize(("module", "name", "framework"), [
    ("wandb.integration.keras", "keras", "keras"),
    ("wandb.keras", "keras", "keras"),
    ("wandb.integration.lightning.fabric", "fabric", "lightning"),
    ("wandb.integration.xgboost", "xgboost", "xgboost"),
    ("wandb.xgboost", "xgboost", "xgboost"),
    ("wandb.integration.lightgbm", "lightgbm", "lightgbm"),
    ("wandb.lightgbm", "lightgbm", "lightgbm"),
])
def test_wandbs_integration_paths_are_localtracks_integrations(tmp_path: Path, module: str,
                                                                name: str, framework: str) -> None:
    """Every name of the localtrack module, read then (another helper's names included)."""
    if not has(framework, "torch" if framework in ("keras", "lightning") else framework):
        pytest.skip(f"needs {framework}: {_INSTALL}")
    out = run_script(tmp_path, f"""
        import importlib
        shim = importlib.import_module({module!r})
        mine = importlib.import_module("localtrack.integrations.{name}")
        assert mine.__all__ and shim.__all__ == mine.__all__
        assert all(getattr(shim, n) is getattr(mine, n) for n in mine.__all__)
        print(" ".join(shim.__all__))
    """).stdout
    assert "WandbLogger" in out or "WandbCallback" in out or "wandb_callback" in out \
        or "WandbMetricsLogger" in out


def test_wandb_module_paths_and_internals_frameworks_use(tmp_path: Path) -> None:
    """W&B's other module paths, and the internals Lightning and Transformers call."""
    run_script(tmp_path, """
        import importlib.metadata, logging
        import localtrack, wandb
        import wandb.plot, wandb.env, wandb.util, wandb.errors
        from wandb.apis.public import Api, Run as PublicRun
        from wandb.sdk.lib import RunDisabled
        from wandb.sdk.lib.config_util import ConfigError
        from wandb.sdk.wandb_run import Run as SdkRun
        from wandb.wandb_run import Run

        assert wandb.Api is Api is localtrack.Api and PublicRun is localtrack.ApiRun
        assert wandb.Run is Run is SdkRun is localtrack.Run and issubclass(RunDisabled, Run)
        assert wandb.plot.pr_curve is localtrack.plot.pr_curve and wandb.Image is localtrack.Image
        assert issubclass(ConfigError, wandb.errors.Error)
        assert wandb.errors.Error is localtrack.LocaltrackError
        assert len(wandb.util.generate_id()) == 8
        assert wandb.run is None and not hasattr(wandb, "_attach")
        wandb.env.set_project("viaenv")  # Transformers' W&B hyperparameter search
        wandb.require("service")  # Lightning's WandbLogger when pickled
        wandb.termwarn("a warning", repeat=False)
        run = wandb.init(dir="here", resume="allow")  # Lightning's: W&B's "allow" with no id
        run._label(code="transformers_trainer")  # Transformers' WandbCallback
        assert wandb.run is run and wandb.config is not None
        wandb.config.update({"a": 1}, allow_val_change=True)
        wandb.define_metric("x")
        wandb.define_metric("*", step_metric="x", step_sync=True)
        wandb.log({"x": 5, "loss": 1.0})
        wandb.summary["best"] = 3
        wandb.finish()
        read = localtrack.Api("here/localtrack-runs").run(run.path)
        assert run.project == "viaenv" and read.config == {"a": 1} and read.summary["best"] == 3
        # LOCALTRACK_DIR names the store and wins over a framework's dir
        import os
        os.environ["LOCALTRACK_DIR"] = "mine"
        wandb.init(dir="here", project="q").finish()
        assert [r.project for r in localtrack.Api("mine").runs()] == ["q"]
    """)


def test_the_cli_prints_the_shim_folder_and_the_version_is_wandbs(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "localtrack", "wandb-shim"], env=env(shim=False),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    folder = Path(proc.stdout.strip())
    assert folder == SHIM and (folder / "wandb" / "__init__.py").is_file()
    out = subprocess.run([sys.executable, "-c", "import importlib.metadata as m, wandb; "
                          "print(m.version('wandb'), wandb.__version__, m.metadata('wandb')['Summary'])"],
                         env={**env(shim=False), "PYTHONPATH": os.pathsep.join(
                             [str(folder), os.environ.get("PYTHONPATH", "")])},
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    version, again, summary = out.stdout.split(" ", 2)
    assert version == again == "0.19.99" and summary.startswith("localtrack's wandb shim")


def test_the_shim_is_never_active_unless_put_on_the_path(tmp_path: Path) -> None:
    """``import localtrack`` does not import it, and without it there is no wandb at all."""
    out = run_script(tmp_path, """
        import importlib.util, sys
        import localtrack
        localtrack.init(project="p").finish()
        print("wandb" in sys.modules, importlib.util.find_spec("wandb") is None)
    """, shim=False).stdout
    assert out.split() == ["False", "True"]
    out = run_script(tmp_path, """
        import sys
        import localtrack
        print("wandb" in sys.modules)
    """).stdout
    assert out.split() == ["False"]


def test_a_real_wandb_beside_the_shim_is_named_by_the_cli_and_the_shim(tmp_path: Path) -> None:
    """The first on sys.path wins: both say which one that is."""
    real = tmp_path / "site" / "wandb"
    real.mkdir(parents=True)
    (real / "__init__.py").write_text("REAL = True\n")
    site = str(tmp_path / "site")
    cli = subprocess.run([sys.executable, "-m", "localtrack", "wandb-shim"],
                         env={**env(shim=False), "PYTHONPATH": os.pathsep.join(
                             [site, os.environ.get("PYTHONPATH", "")])},
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and Path(cli.stdout.strip()) == SHIM
    assert "the real wandb is installed" in cli.stderr and str(real) in cli.stderr
    proc = subprocess.run([sys.executable, "-c", "import wandb; print(hasattr(wandb, 'REAL'))"],
                          env={**env(), "PYTHONPATH": os.pathsep.join(
                              [str(SHIM), site, os.environ.get("PYTHONPATH", "")])},
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.split() == ["False"]
    assert "the real wandb is installed too" in proc.stderr and str(real) in proc.stderr
