"""A damaged run never hides the others (issue 14): real stores, damaged on purpose.

Listing (Api.runs, ``localtrack runs``, ``localtrack doctor``) reports a folder that is not a
readable run and goes on; reading a damaged run raises a LocaltrackError naming the file and
the run; a value nested too deep is a UsageError before anything is written.

Unreadable files: chmod 000 does not stop root, so as root the CLI and Api run in a child
process that dropped CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its bounding set (then
mode bits bind root too). Where the kernel refuses that, those tests skip and say so; the
damage kinds that need no permissions (run.json a directory, a symlink loop) run everywhere.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import localtrack
from localtrack import _codec
from localtrack._doctor import check_store
from localtrack.errors import CorruptRunError, InvalidValueError, StorageError, UsageError

from .helpers import run_script

GOOD = ("first", "second")


def make_store(store: Path, *ids: str) -> Path:
    """A project 'p' with a few small finished runs."""
    for rid in ids:
        run = localtrack.init(project="p", id=rid, dir=store, config={"lr": 0.1})
        for i in range(3):
            run.log({"loss": 1.0 / (i + 1)})
        run.summary["best"] = 1.0
        run.finish()
    return store / "p" / "runs"


def edit_meta(rdir: Path, **changes: object) -> None:
    meta = json.loads((rdir / "run.json").read_text())
    for key, value in changes.items():
        if value is _DROP:
            del meta[key]
        else:
            meta[key] = value
    (rdir / "run.json").write_text(json.dumps(meta))


_DROP = object()


def _copy_with_space(runs: Path) -> str:
    shutil.copytree(runs / "victim", runs / "victim copy")
    shutil.rmtree(runs / "victim")
    return "victim copy"


def _no_run_json(runs: Path) -> str:
    (runs / "victim" / "run.json").unlink()
    return "victim"


def _a_file(runs: Path) -> str:
    shutil.rmtree(runs / "victim")
    (runs / "victim").write_text("notes")
    return "victim"


def _meta(**changes: object) -> Callable[[Path], str]:
    def damage(runs: Path) -> str:
        edit_meta(runs / "victim", **changes)
        return "victim"
    return damage


def _write(name: str, data: bytes) -> Callable[[Path], str]:
    def damage(runs: Path) -> str:
        (runs / "victim" / name).write_bytes(data)
        return "victim"
    return damage


def _run_json_dir(runs: Path) -> str:
    (runs / "victim" / "run.json").unlink()
    (runs / "victim" / "run.json").mkdir()
    return "victim"


def _run_json_loop(runs: Path) -> str:
    (runs / "victim" / "run.json").unlink()
    (runs / "victim" / "run.json").symlink_to("run.json")
    return "victim"


# Damage that stops a run from being listed (each case: the folder name to report).
UNLISTABLE = [
    pytest.param(_copy_with_space, id="stray-copy-bad-id"),
    pytest.param(_no_run_json, id="no-run-json"),
    pytest.param(_a_file, id="file-in-runs"),
    pytest.param(_write("run.json", b"\x00{garbage"), id="run-json-garbage"),
    pytest.param(_write("run.json", b"[1, 2]"), id="run-json-list"),
    pytest.param(_meta(name=5), id="name-int"),
    pytest.param(_meta(created="yesterday"), id="created-str"),
    pytest.param(_meta(tags=["a", 1]), id="tags-not-strings"),
    pytest.param(_meta(format="3"), id="format-str"),
    pytest.param(_meta(id=_DROP), id="missing-id"),
    pytest.param(_meta(created=_DROP), id="missing-created"),
    pytest.param(_run_json_dir, id="run-json-is-a-directory"),
    pytest.param(_run_json_loop, id="run-json-symlink-loop"),
]


@pytest.mark.parametrize("damage", UNLISTABLE)
def test_api_runs_skips_a_damaged_run_and_warns(store, damage, caplog):
    runs = make_store(store, *GOOD, "victim")
    name = damage(runs)
    with caplog.at_level(logging.WARNING, logger="localtrack"):
        listed = localtrack.Api(store).runs()
        again = localtrack.Api(store).runs("p")
    assert [r.id for r in listed] == [r.id for r in again] == list(GOOD)
    warned = [r.getMessage() for r in caplog.records if f"p/{name}" in r.getMessage()]
    assert len(warned) == 2, caplog.text  # once per Api, naming the folder
    assert warned[0].startswith(f"skipped p/{name}: ") and len(warned[0]) > 40, warned


def test_api_warns_once_per_damaged_folder(store, caplog):
    runs = make_store(store, "first")
    (runs / "junk").mkdir()
    api = localtrack.Api(store)
    with caplog.at_level(logging.WARNING, logger="localtrack"):
        for _ in range(3):
            assert [r.id for r in api.runs()] == ["first"]
    assert caplog.text.count("p/junk") == 1


def test_stray_project_folder_is_skipped(store, caplog):
    make_store(store, "first")
    (store / "my project" / "runs" / "x").mkdir(parents=True)
    (store / "not-a-project").mkdir()  # no runs/: not a project, nothing to say
    with caplog.at_level(logging.WARNING, logger="localtrack"):
        api = localtrack.Api(store)
        assert api.projects() == ["p"]
        assert [r.path for r in api.runs()] == ["p/first"]
    assert "my project" in caplog.text and "not-a-project" not in caplog.text


@pytest.mark.parametrize("changes,problem", [
    pytest.param({"name": 5}, "'name' holds 5", id="name-int"),
    pytest.param({"created": None}, "'created' holds None", id="created-null"),
    pytest.param({"project": _DROP}, "'project' is missing", id="missing-project"),
    pytest.param({"tags": "a,b"}, "'tags' holds 'a,b'", id="tags-str"),
    pytest.param({"format": True}, "'format' holds True", id="format-bool"),
])
def test_wrong_types_in_run_json_are_corrupt_run_errors(store, changes, problem):
    runs = make_store(store, "victim")
    edit_meta(runs / "victim", **changes)
    with pytest.raises(CorruptRunError) as info:
        localtrack.Api(store).run("p/victim")
    msg = str(info.value)
    assert problem in msg and "run.json" in msg and "'p/victim'" in msg, msg
    assert info.value.run_id == "victim" and info.value.path == str(runs / "victim" / "run.json")


def test_run_json_not_an_object_is_a_corrupt_run_error(store):
    runs = make_store(store, "victim")
    (runs / "victim" / "run.json").write_text('"just a string"')
    with pytest.raises(CorruptRunError, match=r"run\.json of run 'p/victim'.*JSON str, not an object"):
        localtrack.Api(store).run("p/victim")


def _nested_json(levels: int) -> bytes:
    return ('{"a":' * levels + "1" + "}" * levels).encode()


@pytest.mark.parametrize("name,read", [
    ("config.json", lambda run: run.config),
    ("summary.json", lambda run: run.summary),
])
@pytest.mark.parametrize("data", [
    pytest.param(b"[1, 2]", id="list"),
    pytest.param(b'"text"', id="string"),
    pytest.param(b"7", id="number"),
    pytest.param(b'{"lr": {"$f": "bogus"}}', id="unknown-tag"),
    pytest.param(b'{"lr": {"$f": [1]}}', id="unhashable-tag"),
    pytest.param(_nested_json(500), id="nested-500"),
    pytest.param(_nested_json(5000), id="nested-5000"),
])
def test_config_and_summary_of_wrong_shape_are_corrupt_run_errors(store, name, read, data):
    runs = make_store(store, "victim")
    (runs / "victim" / name).write_bytes(data)
    run = localtrack.Api(store).run("p/victim")  # opening does not read them
    with pytest.raises(CorruptRunError) as info:
        read(run)
    assert name in str(info.value) and "'p/victim'" in str(info.value)
    assert info.value.path == str(runs / "victim" / name)


def test_doctor_reports_every_damaged_run_and_goes_on(store):
    runs = make_store(store, *GOOD, "meta", "config", "summary", "tag", "listish")
    (runs / "stray copy").mkdir()
    (runs / "empty").mkdir()
    edit_meta(runs / "meta", name=5)
    (runs / "config" / "config.json").write_text("[1]")
    (runs / "summary" / "summary.json").write_text("3")
    (runs / "tag" / "config.json").write_text('{"x": {"$f": "bogus"}}')
    (runs / "listish" / "run.json").write_text("[]")
    found = check_store(store)
    by_run = {f.run: f for f in found}
    assert set(by_run) == {"p/stray copy", "p/empty", "p/meta", "p/config", "p/summary", "p/tag",
                           "p/listish"}, found
    assert by_run["p/config"].path.endswith("config.json")
    assert by_run["p/summary"].path.endswith("summary.json")
    assert "'name' holds 5" in by_run["p/meta"].problem
    assert not any(f.fixable for f in found)


def cli(*args: str, preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALTRACK_")}
    return subprocess.run([sys.executable, "-m", "localtrack", *args], capture_output=True,
                          text=True, timeout=60, env=env, preexec_fn=preexec)


def test_cli_runs_and_doctor_list_around_damage(store):
    runs = make_store(store, *GOOD, "meta", "events")
    (runs / "abc123 copy").mkdir()
    (runs / "empty").mkdir()
    edit_meta(runs / "meta", created="x")
    (runs / "events" / "events.jsonl").unlink()
    (runs / "events" / "events.jsonl").mkdir()  # a folder of no chunks: nothing to read, no crash
    res = cli("runs", "--dir", str(store))
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    listed = [ln.split()[0] for ln in res.stdout.splitlines()[1:]]
    assert set(listed) >= {"p/first", "p/second"}, res.stdout
    for name in ("p/abc123 copy", "p/empty", "p/meta"):
        assert f"skipped {name}:" in res.stderr, res.stderr
    assert "'created' holds 'x'" in res.stderr
    res = cli("doctor", "--dir", str(store))
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    for name in ("p/abc123 copy", "p/empty", "p/meta"):
        assert any(ln.startswith(f"{name}  NEEDS ATTENTION") for ln in res.stdout.splitlines()), res.stdout
    assert "p/first" not in res.stdout and "p/second" not in res.stdout


def test_doctor_targets_name_what_is_not_there(store):
    make_store(store, "first")
    res = cli("doctor", "--dir", str(store), "p/missing")
    assert res.returncode == 2 and "No run 'missing'" in res.stderr, res.stderr
    res = cli("doctor", "--dir", str(store), "nope")
    assert res.returncode == 2 and "No project 'nope'" in res.stderr, res.stderr


@pytest.mark.parametrize("manifest", [
    pytest.param('{"segments": 5}', id="segments-int"),
    pytest.param('{"segments": [], "sealed_through": "x"}', id="sealed-through-str"),
    pytest.param('{"segments": [{"file": "../x"}], "sealed_through": 0}', id="segment-file-path"),
])
def test_doctor_reports_a_manifest_of_wrong_types(store, manifest):
    runs = make_store(store, *GOOD, "victim")
    (runs / "victim" / "manifest.json").write_text(manifest)
    assert {f.run for f in check_store(store)} == {"p/victim"}
    with pytest.raises(CorruptRunError, match="manifest.json"):
        _ = localtrack.Api(store).run("p/victim").last_step


@pytest.mark.parametrize("manifest", [
    pytest.param('{"segments": [{"file": "00000000.parquet"}], "sealed_through": 0, "last_step": 0}',
                 id="segment-without-rows"),
    pytest.param('{"segments": [], "sealed_through": 0, "last_step": 0, "last": 5}', id="last-int"),
])
def test_manifest_values_of_wrong_types_are_corrupt_run_errors(store, manifest):
    runs = make_store(store, *GOOD, "victim")
    (runs / "victim" / "manifest.json").write_text(manifest)
    assert {f.run for f in check_store(store)} == {"p/victim"}
    with pytest.raises(CorruptRunError, match="manifest.json"):
        _ = localtrack.Api(store).run("p/victim").summary


@pytest.mark.parametrize("folder", ["wal", "segments"])
def test_resuming_a_run_whose_history_folder_is_a_file_is_a_corrupt_run_error(store, folder):
    runs = make_store(store, "victim")
    shutil.rmtree(runs / "victim" / folder, ignore_errors=True)  # small runs have no segments/
    (runs / "victim" / folder).write_text("not a folder")
    with pytest.raises(CorruptRunError, match=f"victim/{folder} of run 'victim'.* is a file"):
        localtrack.init(project="p", id="victim", dir=store, resume="must")
    assert (runs / "victim" / folder).read_text() == "not a folder"  # nothing written under it


# -- unreadable files ------------------------------------------------------------------------

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _drop_dac() -> None:
    """In the child before exec: a root process then obeys mode bits like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            os._exit(97)


@pytest.fixture
def unprivileged(tmp_path: Path) -> Iterator[Callable[[], None] | None]:
    """How to start a child for which chmod 000 denies reads (skips where none can be)."""
    preexec = _drop_dac if os.geteuid() == 0 else None
    probe = tmp_path / "probe"
    probe.mkdir(mode=0)
    try:
        res = subprocess.run([sys.executable, "-c", f"import os; os.listdir({str(probe)!r})"],
                             capture_output=True, timeout=30, preexec_fn=preexec)
    finally:
        probe.chmod(0o700)
    if res.returncode == 0:
        pytest.skip("chmod 000 does not deny reads here (root that cannot drop CAP_DAC_OVERRIDE)")
    yield preexec


@pytest.fixture
def chmod_restore() -> Iterator[Callable[[Path, int], None]]:
    """chmod that is undone before tmp_path cleanup and the sealer check look inside."""
    changed: list[tuple[Path, int]] = []

    def chmod(path: Path, mode: int) -> None:
        changed.append((path, path.stat().st_mode & 0o7777))
        path.chmod(mode)

    yield chmod
    for path, mode in reversed(changed):
        path.chmod(mode)


@pytest.mark.parametrize("target", ["run-dir", "run.json", "events.jsonl"])
def test_unreadable_run_is_skipped_and_named(store, unprivileged, chmod_restore, target):
    runs = make_store(store, *GOOD, "victim")
    path = {"run-dir": runs / "victim", "run.json": runs / "victim" / "run.json",
            "events.jsonl": runs / "victim" / "events.jsonl"}[target]
    chmod_restore(path, 0)
    res = cli("runs", "--dir", str(store), preexec=unprivileged)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "p/first" in res.stdout and "p/second" in res.stdout and "p/victim" not in res.stdout
    assert "skipped p/victim" in res.stderr and "Permission denied" in res.stderr, res.stderr
    res = cli("doctor", "--dir", str(store), preexec=unprivileged)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("p/victim"))
    assert "Permission denied" in line and str(path) in line, res.stdout
    code = """
        import sys, localtrack
        from localtrack.errors import StorageError
        api = localtrack.Api(sys.argv[1])
        print(",".join(r.id for r in api.runs()))
        try:
            api.run("p/victim")
        except StorageError as exc:
            print("StorageError", exc.path)
    """
    res = run_script(code, str(store), preexec_fn=unprivileged)
    assert res.returncode == 0, res.stderr
    ids, error = res.stdout.splitlines()
    assert ids == "first,second" and error.startswith(f"StorageError {runs / 'victim'}"), error
    assert "skipped p/victim" in res.stderr


def test_unreadable_files_are_localtrack_errors_in_process(store):
    """No root trick needed: an OSError other than "not there" becomes an error naming the file."""
    runs = make_store(store, "victim")
    (runs / "victim" / "config.json").unlink()
    (runs / "victim" / "config.json").mkdir()
    (runs / "victim" / "summary.json").unlink()
    (runs / "victim" / "summary.json").symlink_to("summary.json")  # a loop: ELOOP, even for root
    run = localtrack.Api(store).run("p/victim")
    for name, read in (("config.json", lambda: run.config), ("summary.json", lambda: run.summary)):
        with pytest.raises((StorageError, CorruptRunError)) as info:
            read()
        assert info.value.path == str(runs / "victim" / name) and "'p/victim'" in str(info.value)


# -- values nested too deep ------------------------------------------------------------------


def nested(levels: int, leaf: object = 1) -> dict[str, object]:
    """``levels`` dicts inside each other, the innermost holding ``leaf``."""
    value: dict[str, object] = {"a": leaf}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _cycle() -> dict[str, object]:
    d: dict[str, object] = {}
    d["self"] = d
    return d


@pytest.mark.parametrize("value", [
    pytest.param(nested(3000), id="3000-deep"),
    pytest.param(nested(_codec.MAX_DEPTH + 1), id="one-too-deep"),
    pytest.param(_cycle(), id="dict-holds-itself"),
])
@pytest.mark.parametrize("how", ["log", "config.update", "config-item", "init-config"])
def test_deep_values_are_usage_errors_before_any_write(store, value, how):
    run = localtrack.init(project="p", id="r", dir=store, config={"lr": 0.1})
    run.log({"loss": 1.0})
    rdir = store / "p" / "runs" / "r"
    before = {p.name: p.read_bytes() for p in (rdir / "config.json", *sorted((rdir / "wal").iterdir()))}
    with pytest.raises(InvalidValueError) as info:
        if how == "log":
            run.log(value)
        elif how == "config.update":
            run.config.update(value)
        elif how == "config-item":
            run.config["deep"] = value
        else:
            localtrack.init(project="p", id="other", dir=store, config=value)
    assert isinstance(info.value, UsageError)
    msg = str(info.value)
    run_id = "'other'" if how == "init-config" else "'r'"  # the codec's "run 'r' in project 'p'"
    assert run_id in msg and f"more than {_codec.MAX_DEPTH} levels" in msg, msg
    assert msg.startswith(("Cannot store key 'a/a/a", "Cannot store key 'self/self",
                           "Cannot store key 'deep/")) and len(msg) < 400, msg
    if how == "init-config":
        assert not (store / "p" / "runs" / "other").exists()
        return
    after = {p.name: p.read_bytes() for p in (rdir / "config.json", *sorted((rdir / "wal").iterdir()))}
    assert after == before
    run.log({"loss": 0.5})  # the run goes on
    run.finish()
    api_run = localtrack.Api(store).run("p/r")
    assert api_run.config == {"lr": 0.1} and api_run.last_step == 1


def test_deep_lists_in_config_are_usage_errors(store):
    deep: list[object] = [1]
    for _ in range(3000):
        deep = [deep]
    run = localtrack.init(project="p", id="r", dir=store)
    with pytest.raises(InvalidValueError, match=r"'x' in run 'r'.*more than"):
        run.config["x"] = deep
    assert dict(run.config) == {}


def test_values_at_the_depth_limit_are_stored_and_read_back(store):
    deepest = nested(_codec.MAX_DEPTH)
    run = localtrack.init(project="p", id="r", dir=store, config={"deep": nested(_codec.MAX_DEPTH - 1)})
    run.log(deepest)
    run.finish()
    api_run = localtrack.Api(store).run("p/r")
    assert api_run.config == {"deep": nested(_codec.MAX_DEPTH - 1)}
    assert api_run.history_table().num_rows == 1


def test_deep_summary_is_a_usage_error(store):
    run = localtrack.init(project="p", id="r", dir=store)
    with pytest.raises(InvalidValueError, match="'r'"):
        run.summary.update(nested(3000))
