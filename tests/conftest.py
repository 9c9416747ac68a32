from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from localtrack import _sealer, _session

from .helpers import settle


def pytest_configure(config: pytest.Config) -> None:
    """The user scripts the suite starts get SIGHUP and SIGINT at their defaults, as under a
    terminal or sbatch. A runner under nohup, or in a background job of a shell without job
    control, ignores them, and an ignored signal stays ignored in children (localtrack keeps
    it so: no preemption); a handler of our own here is reset to the default by exec, while
    the suite itself still ignores them."""
    for signum in (signal.SIGHUP, signal.SIGINT):
        if signal.getsignal(signum) == signal.SIG_IGN:
            signal.signal(signum, lambda *_: None)


@pytest.fixture(autouse=True)
def no_silent_seal_failure(request: pytest.FixtureRequest, tmp_path: Path):
    """Sealer processes only log their failures (the logs stay authoritative) to seal.log in
    the run: wait for every sealer the test started, then fail the test if one failed."""
    yield
    settle(tmp_path)
    if request.node.get_closest_marker("seal_may_fail"):
        return
    failed = [f"{log}: {log.read_text()}" for log in tmp_path.rglob(_sealer.LOG)
              if "failed" in log.read_text()]
    assert not failed, failed


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Every test starts with no LOCALTRACK_* or WANDB_* variable, in its own cwd, with no active run."""
    for key in list(os.environ):
        if key.startswith(("LOCALTRACK_", "WANDB_")):
            monkeypatch.delenv(key)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield
    for run in list(_session._active):
        run.finish()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture(params=["parquet", "jsonl"])
def sealing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test twice: finish() seals every tail into Parquet, or leaves small tails as JSONL."""

    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", str(0 if request.param == "parquet" else 1 << 40))
    return str(request.param)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory):
    """A private single-node SLURM cluster on loopback for the whole session (slurm_helpers)."""
    from .slurm_helpers import cluster

    with cluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running
