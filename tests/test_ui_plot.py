"""`localtrack plot`: curves to an image file, run as a real command."""

from __future__ import annotations

import subprocess
import sys

import pytest

import localtrack
from localtrack._cli import main
from localtrack._plot import ema, plot

pytest.importorskip("matplotlib")  # the test extra installs it; the `plot` extra for users


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "localtrack", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run a is long enough to be downsampled (a min/max band), run b short."""
    store = tmp_path_factory.mktemp("plot") / "store"
    for rid, lr, steps in (("a", 0.1, 5000), ("b", 0.3, 50)):
        run = localtrack.init(project="p", id=rid, dir=store, config={"lr": lr})
        for i in range(steps):
            run.log({"loss": 1.0 / (1 + i * lr), "acc": i / steps, "name": "text"})
        run.finish()
    return store


def test_png_of_one_run(runs, tmp_path):
    out = tmp_path / "loss.png"
    res = cli("plot", "p/a", "--key", "loss", "--out", str(out), "--dir", str(runs))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"wrote {out}"
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def test_svg_of_two_runs_two_keys_by_time_smoothed_log(runs, tmp_path):
    out = tmp_path / "curves.svg"
    code = main(["plot", "p/a", "p/b", "--key", "loss", "--key", "acc", "--out", str(out), "--x", "time",
                 "--smooth", "0.6", "--log", "--dir", str(runs)])
    assert code == 0
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert svg.count("p/a") >= 2 and svg.count("p/b") >= 2   # a legend in each panel


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["p/a", "--key", "nope"], "No numeric values of 'nope' in p/a; metrics there: acc, loss",
                 id="unknown-key"),
    pytest.param(["p/a", "--key", "name"], "No numeric values of 'name'", id="text-key"),
    pytest.param(["p/zzz", "--key", "loss"], "No run 'zzz'", id="unknown-run"),
    pytest.param(["p/a", "--key", "loss", "--smooth", "1.5"], "Invalid smoothing", id="bad-smoothing"),
])
def test_clear_errors(runs, tmp_path, capsys, args, message):
    code = main(["plot", *args, "--out", str(tmp_path / "x.png"), "--dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not (tmp_path / "x.png").exists()


def test_unwritable_target(runs, tmp_path):
    with pytest.raises(localtrack.LocaltrackError, match="Cannot write the plot"):
        plot(localtrack.Api(runs), ["p/a"], ["loss"], tmp_path / "missing-dir" / "x.png")


def test_ema_is_debiased():
    assert ema([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
    assert ema([0.0, 10.0], 0.5)[1] == pytest.approx(5 / 0.75)
