"""Every Python block of the README and docs/ runs as written (issue 16: pasted samples failed).

Each ```python block runs in a fresh directory in a subprocess. A block may rely on what the
page says exists (a run to read, the user's own functions): an HTML comment just above it,
``<!-- before: CODE -->`` (or ``after:``), holds the code that stands for it, invisible on the
rendered page. Blocks marked ``<!-- file: NAME -->`` are files that tests/test_slurm.py runs
under a real SLURM; ``<!-- runby: TEST_FILE -->`` marks a block another test runs against a
store it writes (docs/format.md's Polars and Spark reads, in tests/test_sql.py). Remote URIs
are the one substitution: an S3 bucket or a shared mount becomes a local directory
(tests/test_sync.py runs sync against S3 itself).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import localtrack

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"((?:<!-- [a-z]+: .*? -->\n)*)```python\n(.*?)```", re.S)
COMMENT = re.compile(r"<!-- ([a-z]+): (.*?) -->")
REMOTES = ("s3://bucket/team", "/mnt/shared/store")


def python_blocks() -> list[tuple[str, int, dict[str, str], str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for m in BLOCK.finditer(text):
            notes = dict(COMMENT.findall(m.group(1)))
            line = text.count("\n", 0, m.start(2)) + 1
            found.append((f"{page.relative_to(ROOT)}:{line}", line, notes, m.group(2)))
    return found


BLOCKS = python_blocks()


def test_the_pages_have_the_blocks_this_file_runs() -> None:
    # A change of the fence or comment syntax must not quietly leave blocks unrun.
    fences = sum(p.read_text().count("```python") for p in PAGES)
    assert len(BLOCKS) == fences >= 7


@pytest.mark.parametrize(("where", "line", "notes", "code"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_a_python_block_runs_as_written(tmp_path: Path, where: str, line: int,
                                        notes: dict[str, str], code: str) -> None:
    if "file" in notes:
        assert where.startswith("docs/slurm.md"), "only docs/slurm.md's files are run elsewhere"
        pytest.skip(f"{notes['file']} runs under SLURM in tests/test_slurm.py")
    if "runby" in notes:
        assert where.split(":")[0] in (ROOT / notes["runby"]).read_text(), notes["runby"]
        pytest.skip(f"run against a store by {notes['runby']}")
    for i, uri in enumerate(REMOTES):
        code = code.replace(uri, str(tmp_path / f"remote{i}"))
    script = "\n".join([notes.get("before", ""), code, notes.get("after", "")])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "WANDB_"))}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{where}:\n{script}\n{res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr


def test_the_readme_quick_start_logs_each_epochs_keys_at_one_step(tmp_path: Path) -> None:
    where, _, _, code = BLOCKS[0]
    assert where.startswith("README.md") and "resume=\"auto\"" in code
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "WANDB_"))}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, timeout=300)
    (run,) = localtrack.Api(dir=tmp_path / "localtrack-runs").runs("mnist")
    rows = run.history_table().to_pylist()
    assert [r["_step"] for r in rows] == list(range(100))  # one step per epoch
    assert all(r["loss"] == 0.3 and r["val/loss"] == 0.4 for r in rows)
    assert run.summary["best_acc"] == 0.95
