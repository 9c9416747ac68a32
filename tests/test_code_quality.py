"""ruff and strict mypy hold on the package (pinned in the test extra)."""

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
