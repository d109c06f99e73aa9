"""The layout a new engineer relies on: a module per capability, none too long, no import cycles, wiring in
plain lists (no discovery by reflection)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

BACKEND = Path(__file__).resolve().parent.parent / "backend"
README = BACKEND.parent / "README.md"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    return {p.stem: p for p in BACKEND.glob("*.py") if p.stem != "__init__"}


def _imports(path: Path, names: set[str]) -> set[str]:
    """Every backend module this file imports, anywhere in it (inside functions too: a late import is still
    a dependency)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1 or base.startswith("backend"):
                base = base.removeprefix("backend").lstrip(".")
                if base:
                    found.add(base.split(".")[0])
                else:  # from . import a, b
                    found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("backend."))
    return found & names


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep) :] + [dep] if dep in path else path + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_over_the_limit():
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split these by capability: {long}"


def test_every_capability_in_the_readme_has_its_own_file():
    section = README.read_text(encoding="utf-8").split("## Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`backend/(\w+)\.py`", section))
    assert len(named) >= 15, f"the README's layout section names too few modules: {sorted(named)}"
    missing = {name for name in named if not (BACKEND / f"{name}.py").exists()}
    assert not missing, f"the README names modules that do not exist: {missing}"
    unnamed = set(_modules()) - named - {"__main__"}
    assert not unnamed, f"modules the README's layout section does not explain: {unnamed}"


def test_wiring_is_explicit():
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        assert "capability_modules" not in text and "importlib" not in text, f"{name} discovers modules"
        assert not re.search(r"hasattr\(module", text), f"{name} finds hooks by reflection"
    from backend import app

    assert app.RECORD_HOOKS and app.WORKER_STEPS and app.SITE_SEEDERS and app.ROUTERS
