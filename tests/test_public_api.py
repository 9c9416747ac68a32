"""The public surface: names, error tree, and a cheap import."""

from __future__ import annotations

import importlib.util
import inspect
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import localtrack
import localtrack.errors as errors
from localtrack import _settings

from .helpers import settle

ROOT = Path(__file__).resolve().parent.parent


def test_all_is_sorted_and_exact():
    # A subpackage becomes an attribute once anything in the process imports it (another test
    # file of this pytest worker did `import localtrack.integrations`): not the surface.
    imported = {n for n, v in vars(localtrack).items()
                if inspect.ismodule(v) and v.__name__ == f"localtrack.{n}"}
    public = ({n for n in vars(localtrack) if not n.startswith("_")} - {"annotations"}
              - (imported - set(localtrack.__all__)))
    assert localtrack.__all__ == sorted(localtrack.__all__)
    assert set(localtrack.__all__) - {"__version__"} == public


def test_every_error_is_rooted_at_localtrack_error():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if c.__module__ == errors.__name__]
    assert len(classes) >= 8
    for cls in classes:
        assert issubclass(cls, localtrack.LocaltrackError), cls
    assert localtrack.LocaltrackError is errors.LocaltrackError
    assert issubclass(errors.InvalidNameError, ValueError)
    assert issubclass(errors.UnsupportedTypeError, TypeError)
    assert issubclass(errors.StorageError, OSError)


def test_import_stays_light():
    code = ("import sys, localtrack; heavy = [m for m in ('pyarrow', 'watchdog', 'pandas', 'numpy')"
            " if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_module_level_follows_active_run(store):
    assert localtrack.run is None and localtrack.config is None and localtrack.summary is None
    run = localtrack.init(project="p", dir=store, config={"lr": 0.5})
    assert localtrack.run is run
    assert localtrack.config.lr == 0.5
    localtrack.log({"x": 1.0})
    localtrack.summary["best"] = 2
    localtrack.finish()
    assert localtrack.run is None
    stored = localtrack.Api(store).run(f"p/{run.id}")
    assert stored.summary == {"x": 1.0, "best": 2}
    assert stored.state == "finished"


def test_log_without_run_is_a_usage_error():
    try:
        localtrack.log({"a": 1})
    except errors.UsageError as exc:
        assert "init()" in str(exc)
    else:
        raise AssertionError("expected UsageError")


def test_context_manager_records_failure(store):
    try:
        with localtrack.init(project="p", dir=store) as run:
            run.log({"a": 1})
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    stored = localtrack.Api(store).run(f"p/{run.id}")
    assert stored.state == "failed"
    assert stored.events[-1]["exit_code"] == 1


def test_disabled_mode_writes_nothing(store, monkeypatch):
    monkeypatch.setenv("LOCALTRACK_MODE", "disabled")
    run = localtrack.init(project="p", dir=store, config={"a": 1})
    run.log({"x": 1.0})
    run.config.update({"b": 2})
    run.summary["s"] = 1
    assert run.step == 1 and run.config.b == 2
    run.finish()
    assert not store.exists()


@pytest.mark.parametrize("name,value", [
    pytest.param("LOCALTRACK_ROTATE_BYTES", "16M", id="rotate-with-a-unit"),
    pytest.param("LOCALTRACK_ROTATE_BYTES", "0", id="rotate-zero"),
    pytest.param("LOCALTRACK_SEAL_MIN_BYTES", "-1", id="seal-negative"),
    pytest.param("LOCALTRACK_SEAL_MIN_BYTES", "1.5", id="seal-fraction"),
])
def test_a_size_variable_that_is_no_size_is_refused_before_anything_is_written(
        store, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(errors.UsageError, match=f"{name}={value!r}"):
        localtrack.init(project="p", dir=store)
    assert not store.exists()


@pytest.mark.parametrize("seal_min,tails", [(1 << 40, 1), (0, 0)])
def test_the_size_variables_rotate_the_log_and_seal_its_tail(store, monkeypatch, seal_min, tails):
    """LOCALTRACK_ROTATE_BYTES closes a log file at the next step past that size (closed ones
    are sealed); LOCALTRACK_SEAL_MIN_BYTES decides whether the finished tail is sealed too."""
    monkeypatch.setenv("LOCALTRACK_ROTATE_BYTES", "4000")
    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", str(seal_min))
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(300):
        run.log({"x": i, "pad": "x" * 40})  # ~60 bytes a row: ~18 KB in all
    run.finish()
    settle(store)
    rdir = store / "p" / "runs" / "r"
    assert len(list((rdir / "wal").glob("*.jsonl"))) == tails
    assert len(list((rdir / "segments").glob("*.parquet"))) >= 3
    assert localtrack.Api(store).run("p/r").history_table()["x"].to_pylist() == list(range(300))


@pytest.mark.parametrize("call", [
    pytest.param(lambda: localtrack.init("team", "proj"), id="init-entity-project"),
    pytest.param(lambda: localtrack.sweep({"method": "grid"}, "team", "proj"), id="sweep-project-dir"),
    pytest.param(lambda: localtrack.agent("p/abc", lambda: None), id="agent-function"),
    pytest.param(lambda: localtrack.sync("remote", "store"), id="sync-dir"),
])
def test_only_the_first_argument_is_positional(call):
    # Ported W&B code passes (entity, project): a silent rebinding would be worse than an error.
    with pytest.raises(TypeError, match="positional"):
        call()
    assert not Path("localtrack-runs").exists()


def test_init_signature_offers_the_literal_values():
    hints = typing.get_type_hints(localtrack.init)
    assert hints["mode"] == _settings.Mode | None
    assert hints["fsync"] == _settings.FsyncPolicy | None
    assert hints["resume"] == _settings.Resume
    assert hints["reinit"] == _settings.Reinit
    assert hints["return"] is localtrack.Run  # a disabled run is a Run too
    for mode in typing.get_args(_settings.Mode):  # every value the type offers is taken
        resolved = _settings.resolve(project=None, run_id=None, resume=None, dir=None, mode=mode,
                                     fsync=None)
        assert resolved.mode in _settings.MODES
    for how in typing.get_args(_settings.ReinitMode):
        assert _settings.reinit_mode(how) in _settings.REINIT_MODES


def test_py_typed_is_in_the_package_and_its_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    assert (ROOT / "localtrack" / "py.typed").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in data["tool"]["setuptools"]["package-data"]["localtrack"]


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="needs setuptools")
def test_py_typed_ships_in_the_built_package(tmp_path):
    # setuptools' build_py picks the files a wheel holds: without the package-data entry
    # py.typed stays behind, and users' type checkers ignore our annotations.
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "localtrack", src / "localtrack",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-W", "ignore", "-c", "from setuptools import setup; setup()",
                    "-q", "build_py", "--build-lib", str(tmp_path / "lib")],
                   cwd=src, capture_output=True, check=True)
    assert (tmp_path / "lib" / "localtrack" / "py.typed").is_file()
