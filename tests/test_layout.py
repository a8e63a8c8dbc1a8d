"""The house's rules, read from the code with `ast`: imports run one way (no circle in engine/,
handlers/ or emulator/), the emulator — our oracle for Notion — imports nothing of the relay,
engine/ never imports tornado.web, and rooms stay small."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.inprocess

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "handlers", "emulator")
MAX_LINES = 300
FACADE = ROOT / "engine" / "upload" / "service.py"
MAX_FACADE_LINES = 200
TOO_BIG_BY_NATURE = {ROOT / "handlers" / "openapi.py"}  # the OpenAPI document, as data


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def imports_of(path: Path) -> set[str]:
    """Project modules `path` imports (relative imports resolved; `import a.b` counts as a.b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    known = {module_name(p) for p in project_files()}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:  # `from pkg import mod` imports pkg.mod; `from mod import name`, mod
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name in known and name != module_name(path)}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in project_files()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each as the path that closes it (Tarjan's strongly connected parts)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                part.append(top)
                if top == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_emulator_imports_nothing_of_the_relay():
    leaks = {m: sorted(i for i in imps if not i.startswith("emulator")) for m, imps in graph().items()
             if m.startswith("emulator")}
    assert {m: i for m, i in leaks.items() if i} == {}


def test_engine_never_imports_tornado_web():
    offenders = []
    for path in (ROOT / "engine").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "import tornado.web" in text or "from tornado.web" in text or "from tornado import web" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


@pytest.mark.parametrize("folder", ["engine", "handlers"])
def test_rooms_stay_small(folder):
    big = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*.py")
           if p not in TOO_BIG_BY_NATURE and (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert big == {}


def test_the_facade_is_small():
    assert len(FACADE.read_text(encoding="utf-8").splitlines()) <= MAX_FACADE_LINES
