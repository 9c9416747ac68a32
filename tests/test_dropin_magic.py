"""Drop-in leftovers of issue 16 on the run's side: W&B's magic argparse capture
(``init(magic=True)``) and the module-level ``localtrack.mark_preempting()``.

Magic is about a script's arguments, so each case is a script run in a subprocess with real
command-line arguments; what it leaves is read back through the public read API.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import localtrack
from localtrack.errors import UsageError
from tests.test_dropin import ok, run_py

PARSE_BEFORE = """
import argparse, pathlib
import localtrack as wandb

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("ckpt"))
parser.add_argument("--token", default="hush")
args = parser.parse_args()

run = wandb.init(project="p", id="r1", dir="store", magic=True, config={"lr": 0.5},
                 config_exclude_keys=["token"])
run.finish()
"""


def test_magic_takes_arguments_parsed_before_init(tmp_path: Path) -> None:
    """W&B's magic: the parsed arguments land in the config, typed as argparse made them;
    what the script gave init() wins, and config_exclude_keys holds for magic too."""
    ok(run_py(tmp_path, PARSE_BEFORE, "--epochs", "7", "--lr", "0.2", "--token", "s3cret"))
    config = localtrack.Api(tmp_path / "store").run("p/r1").config
    assert config == {"lr": 0.5, "epochs": 7, "out": "ckpt"}


PARSE_AFTER = """
import argparse, sys
import localtrack as wandb

real = argparse.ArgumentParser.parse_known_args
parser = argparse.ArgumentParser()          # made before init(), parsed after it
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--seed", type=int, default=0)

def main():
    run = wandb.init(project="p", id="r1", dir="store", magic="yes", config={"seed": 1})
    args = parser.parse_args()
    assert (wandb.config.lr, wandb.config.epochs, wandb.config.seed) == (0.2, 3, 1), wandb.config
    late = argparse.ArgumentParser()        # made after init(): seen too, a newer parse wins
    late.add_argument("--lr", type=float)
    late.add_argument("--batch", type=int, default=64)
    late.parse_known_args(["--lr", "0.3"])
    assert (wandb.config.lr, wandb.config.batch) == (0.3, 64), wandb.config
    wandb.config.epochs = 9                 # the script's own value: no parse undoes it
    parser.parse_args(["--epochs", "4"])
    assert (wandb.config.epochs, wandb.config.lr) == (9, 0.01), wandb.config
    run.finish()
    print(argparse.ArgumentParser.parse_known_args is real)
    parser.parse_args(["--epochs", "5", "--lr", "5"])   # after finish: nothing captured
    print(dict(wandb.Api("store").run("p/r1").config) == dict(run.config))

main()
"""


def test_magic_patches_argparse_while_the_run_lives(tmp_path: Path) -> None:
    out = ok(run_py(tmp_path, PARSE_AFTER, "--lr", "0.2"))
    assert out.split() == ["True", "True"]  # argparse put back; the stored config is the run's
    config = localtrack.Api(tmp_path / "store").run("p/r1").config
    assert config == {"lr": 0.01, "epochs": 9, "seed": 1, "batch": 64}


NO_MAGIC = """
import argparse
import localtrack as wandb

real = argparse.ArgumentParser.parse_known_args
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.01)
args = parser.parse_args()
run = wandb.init(project="p", id="r1", dir="store", magic=False)
parser.parse_args()
print(argparse.ArgumentParser.parse_known_args is real, dict(run.config))
run.finish()
"""


def test_without_magic_argparse_is_left_alone(tmp_path: Path) -> None:
    assert ok(run_py(tmp_path, NO_MAGIC, "--lr", "0.2")).split() == ["True", "{}"]


def test_a_sweeps_values_stay_locked_under_magic(tmp_path: Path) -> None:
    """In a sweep job, magic adds the script's other arguments but never the sweep's keys."""
    store = tmp_path / "store"
    sweep_id = localtrack.sweep({"method": "grid", "parameters": {"lr": {"values": [0.1]}}},
                                project="p", dir=store)
    seen: list[dict[str, object]] = []

    def train() -> None:
        run = localtrack.init(magic=True)
        parser = argparse.ArgumentParser()
        parser.add_argument("--lr", type=float, default=0.5)
        parser.add_argument("--depth", type=int, default=2)
        parser.parse_args(["--depth", "3"])
        seen.append(dict(run.config))
        run.finish()

    assert localtrack.agent(sweep_id, function=train, project="p", dir=store) == 1
    assert seen == [{"lr": 0.1, "depth": 3}]
    stored = localtrack.Api(store).sweep(f"p/{sweep_id}").runs[0]["id"]
    assert localtrack.Api(store).run(f"p/{stored}").config == {"lr": 0.1, "depth": 3}


def test_module_level_mark_preempting_needs_a_run() -> None:
    assert localtrack.run is None
    with pytest.raises(UsageError, match=r"localtrack.mark_preempting\(\) needs an active run"):
        localtrack.mark_preempting()


FORKED = """
import argparse, os
import localtrack as wandb

parser = argparse.ArgumentParser()
parser.add_argument("--workers", type=int, default=1)
run = wandb.init(project="p", id="r1", dir="store", magic=True)
pid = os.fork()
if pid == 0:  # a data-loader child parsing its own arguments: not the parent's run's
    parser.parse_args(["--workers", "9"])
    os._exit(0)
assert os.waitpid(pid, 0)[1] == 0
parser.parse_args(["--workers", "4"])
run.finish()
"""


def test_a_forked_child_parses_without_touching_the_parents_run(tmp_path: Path) -> None:
    proc = run_py(tmp_path, FORKED)
    ok(proc)
    assert "magic" not in proc.stderr, proc.stderr  # no refused write from the child
    assert localtrack.Api(tmp_path / "store").run("p/r1").config == {"workers": 4}
