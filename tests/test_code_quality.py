"""ruff and strict mypy hold on the package (pinned in the test extra), and rules they cannot see."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff():
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "localtrack", "tests"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_strict():
    res = subprocess.run([sys.executable, "-m", "mypy", "localtrack"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def test_only_fsutil_calls_fsync():
    """Durability lives in one module (_fsutil): every fsync of the store passes there, where
    the power-loss tests and readers of the code find them all."""
    callers = [f"{path.relative_to(ROOT)}:{n}" for path in (ROOT / "localtrack").rglob("*.py")
               if path.name != "_fsutil.py"
               for n, line in enumerate(path.read_text().splitlines(), 1) if "os.fsync(" in line]
    assert not callers, callers
