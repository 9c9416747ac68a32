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
from pathlib import Path

import pytest

import localtrack
from localtrack import _sync
from localtrack._remotes import open_remote
from localtrack._remotes._dir import DirRemote
from localtrack.errors import UsageError
from tests import s3server
from tests.helpers import wait_for
from tests.test_dropin import ok, run_py

s3_server, s3 = s3server.s3_server, s3server.s3  # the loopback S3 fixtures


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
        wait_for(lambda: read(files / "live.txt") == "v2", 60, "the live copy of v2")
        assert proc.stdout.readline() == "writing\n"
        copies = wait_for(lambda: read(files / "chk" / "model.bin"), 60,
                          "live copies of chk/model.bin")
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
    files = [f for f in run.files() if not f.name.startswith("code/")]  # (check_code's)
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


# -- sync carries files/ and code/ ------------------------------------------------------------

@pytest.fixture
def remote_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A directory remote or a fresh bucket on the loopback S3 server."""
    if request.param == "dir":
        return str(tmp_path / "remote")
    server = request.getfixturevalue("s3")
    return str(server.uri(server.new_bucket()))


class RecordingRemote(DirRemote):
    """A real directory remote that notes its writes in order."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.puts: list[str] = []
        self.streamed: list[tuple[str, int, int]] = []  # (key, chunk, bytes) of put_file

    def put(self, key: str, data: bytes) -> None:
        super().put(key, data)
        self.puts.append(key)

    def put_file(self, key: str, path: Path, chunk: int, sha256: str | None = None,
                 opener=None) -> int:
        size = super().put_file(key, path, chunk, sha256, opener)
        self.puts.append(key)
        self.streamed.append((key, chunk, size))
        return size


def check_code(run: localtrack.ApiRun, job: Path, dest: Path) -> None:
    """save_code's copy is among the run's files as W&B names it, ``code/<script>``."""
    assert [f.name for f in run.files()] == ["ckpt/a.txt", "ckpt/sub/b.txt", "code/train.py"]
    code = run.file("code/train.py")
    assert code.size == (job / "train.py").stat().st_size
    with code.download(root=dest) as f:
        assert f.read() == (job / "train.py").read_text()
    assert (dest / "code" / "train.py").read_bytes() == (job / "train.py").read_bytes()


@pytest.mark.parametrize("remote_uri", ["dir", "s3"], indirect=True)
def test_sync_uploads_saved_files_and_code_and_runfile_reads_them(job: Path, remote_uri: str) -> None:
    ok(run_py(job, SAVER.replace('dir="store")', 'dir="store", save_code=True)')))
    check_code(api_run(job), job, job / "code-local")
    report = localtrack.sync(remote_uri, dir=job / "store")
    assert report.ok
    remote_run = localtrack.Api(dir=remote_uri).run("p/r1")
    check_downloads(remote_run, job / "from-remote")
    check_code(remote_run, job, job / "code-remote")
    objects = remote_objects(remote_uri)
    assert objects["p/runs/r1/code/train.py"] == (job / "train.py").read_bytes()
    again = localtrack.sync(remote_uri, dir=job / "store")
    assert again.ok and again.uploaded_files == 0


def test_sync_sends_only_changed_files_and_before_run_json(job: Path, tmp_path: Path) -> None:
    ok(run_py(job, SAVER))
    store = job / "store"
    remote = RecordingRemote(tmp_path / "remote")
    with _sync.Syncer(store, remote) as syncer:
        syncer.check()
        assert syncer.run_once().ok
    run_keys = [k for k in remote.puts if k.startswith("p/runs/r1/")]
    assert run_keys.index("p/runs/r1/files/ckpt/a.txt") < run_keys.index("p/runs/r1/run.json")
    ok(run_py(job, """
        import localtrack as wandb
        open("ckpt/a.txt", "w").write("alpha, again")
        run = wandb.init(project="p", id="r1", dir="store", resume="must")
        wandb.save("ckpt/a.txt", policy="now")
        run.finish()
    """, name="again.py"))
    remote.puts.clear()
    with _sync.Syncer(store, remote) as syncer:
        syncer.check()
        assert syncer.run_once().ok
    sent = [k for k in remote.puts if "/files/" in k or "/code/" in k]
    assert sent == ["p/runs/r1/files/ckpt/a.txt"]  # b.txt did not change
    with localtrack.Api(dir=tmp_path / "remote").run("p/r1").file("ckpt/a.txt").download(
            root=tmp_path / "dl") as f:
        assert f.read() == "alpha, again"


def test_a_big_saved_file_is_streamed_up(job: Path, tmp_path: Path, monkeypatch) -> None:
    """A saved checkpoint goes up LOCALTRACK_UPLOAD_CHUNK_BYTES at a time (as artifacts' blobs),
    never read whole into memory, and arrives whole; a link planted in files/ is not followed."""
    monkeypatch.setenv("LOCALTRACK_UPLOAD_CHUNK_BYTES", str(64 << 10))
    big = os.urandom(3 << 20)
    (job / "ckpt").mkdir(exist_ok=True)
    (job / "ckpt" / "model.bin").write_bytes(big)
    ok(run_py(job, """
        import localtrack as wandb
        run = wandb.init(project="p", id="big", dir="store")
        wandb.save("ckpt/model.bin", policy="now")
        run.finish()
    """, name="big.py"))
    secret = tmp_path / "secret.txt"
    secret.write_text("not the run's")
    os.symlink(secret, job / "store" / "p" / "runs" / "big" / "files" / "planted.txt")
    remote = RecordingRemote(tmp_path / "remote")
    with _sync.Syncer(job / "store", remote) as syncer:
        syncer.check()
        assert syncer.run_once().ok
    assert ("p/runs/big/files/ckpt/model.bin", 64 << 10, len(big)) in remote.streamed
    got = localtrack.Api(dir=tmp_path / "remote").run("p/big")
    got.file("ckpt/model.bin").download(root=tmp_path / "dl").close()
    assert (tmp_path / "dl" / "ckpt" / "model.bin").read_bytes() == big
    assert not (tmp_path / "remote" / "p" / "runs" / "big" / "files" / "planted.txt").exists()


def test_a_killed_sync_rerun_leaves_every_saved_file_whole(job: Path, tmp_path: Path) -> None:
    ok(run_py(job, """
        import os
        import localtrack as wandb
        os.makedirs("many", exist_ok=True)
        for i in range(400):
            open(f"many/{i:03d}.bin", "wb").write(bytes([i % 256]) * 50_000)
        run = wandb.init(project="p", id="r1", dir="store")
        wandb.save("many/*.bin", policy="now")
        run.finish()
    """))
    remote = tmp_path / "remote"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "AWS_"))}
    proc = subprocess.Popen([sys.executable, "-m", "localtrack", "sync", "--to", str(remote),
                             "--dir", str(job / "store")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: proc.poll() is not None or any((remote / "p/runs/r1/files/many").glob("*.bin")),
                 60, "the first saved file on the remote")
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err  # killed mid-way, not ended on its own
    assert len(list((remote / "p/runs/r1/files/many").glob("*.bin"))) < 400
    assert localtrack.sync(str(remote), dir=job / "store").ok
    files = sorted((remote / "p/runs/r1/files/many").iterdir())
    assert [f.name for f in files] == [f"{i:03d}.bin" for i in range(400)]
    assert all(f.read_bytes() == bytes([i % 256]) * 50_000 for i, f in enumerate(files))
    assert localtrack.sync(str(remote), dir=job / "store").uploaded_files == 0


def remote_objects(uri: str) -> dict[str, bytes]:
    remote = open_remote(uri)

    def walk(key: str) -> dict[str, bytes]:
        out = {}
        for name, entry in remote.list(key).items():
            sub = f"{key}/{name}" if key else name
            out.update(walk(sub) if entry.is_dir else {sub: remote.get(sub)})
        return out

    return walk("")


def test_status_counts_saved_files_and_clean_wants_them_on_the_remote(job: Path,
                                                                       tmp_path: Path) -> None:
    ok(run_py(job, SAVER))
    store, remote = job / "store", tmp_path / "remote"
    with _sync.Syncer(store, DirRemote(remote)) as syncer:
        syncer.check()
        assert syncer.run_once().ok
        assert [(s.pending_files, s.pending_bytes) for s in syncer.status()] == [(0, 0)]
        (store / "p/runs/r1/files/ckpt/a.txt").write_text("changed!")
        assert [(s.pending_files, s.pending_bytes) for s in syncer.status()] == [(1, 8)]
        assert syncer.run_once().ok
    (remote / "p/runs/r1/files/ckpt/sub/b.txt").unlink()  # the remote lost one
    report = localtrack.sync(str(remote), dir=store, clean=True)
    assert report.cleaned == [] and (store / "p/runs/r1/files/ckpt/sub/b.txt").is_file()
    (store / "p/runs/r1/sync").rename(tmp_path / "lost-state")  # the state is lost: all again
    report = localtrack.sync(str(remote), dir=store, clean=True)
    assert report.cleaned == ["p/r1"] and not (store / "p/runs/r1").exists()
    assert (remote / "p/runs/r1/files/ckpt/sub/b.txt").read_text() == "beta"
