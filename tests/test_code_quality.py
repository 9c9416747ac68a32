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


def _module_imports() -> dict[str, set[str]]:
    """Each localtrack module and the localtrack modules it imports at its top level (imports
    inside functions are lazy ones: pyarrow, or a layer above on purpose, and are left out)."""
    import ast

    pkg = ROOT / "localtrack"
    graph: dict[str, set[str]] = {}
    for path in pkg.rglob("*.py"):
        parts = path.relative_to(pkg).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "localtrack"
        here = parts[:-1]  # the package the module is in
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.level:
                base = list(here[:len(here) - (node.level - 1)] if node.level > 1 else here)
                if node.module:
                    deps.add(".".join([*base, *node.module.split(".")]))
                else:
                    deps.update(".".join([*base, alias.name]) for alias in node.names)
        graph[name] = {d for d in deps if d != name}
    return graph


def test_no_import_cycles():
    """The module map (docs/architecture.md) is layered: no module imports, at its top level,
    one that imports it back, however indirectly."""
    graph = _module_imports()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue  # a name imported from a package's __init__, not a module
            assert state.get(dep) != 1, " -> ".join([*trail, node, dep])
            if dep not in state:
                visit(dep, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_every_module_is_on_the_map():
    """docs/architecture.md names every module, so the map stays true when one is added."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [name for name in _module_imports() if name != "localtrack"
               and f"`{name.split('.')[0]}/`" not in text and f"`{name}.py`" not in text
               and f"`{name.split('.')[-1]}.py`" not in text]
    assert not missing, missing
