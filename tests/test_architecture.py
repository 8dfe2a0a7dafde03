"""The package's shape: one package per pipeline stage, a stage imports only earlier stages, and
no module imports form a cycle (imports inside functions count: a lazy cycle is still a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import emogrid

SRC = Path(emogrid.__file__).parent
# the order written in emogrid/__init__.py's docstring
STAGES = ["study", "data", "models", "scheduling", "planning", "training", "results", "report"]
TOP_LEVEL = {"__init__", "__main__", "cli", "cli_config", "errors", "atomic", "package_data", "quiet"}
# the command line and the package root (which re-exports the Python API, emogrid.open_study,
# on first use) sit above every stage
ENTRY = {"emogrid", "emogrid.cli", "emogrid.cli_config", "emogrid.__main__"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(("emogrid", *path.relative_to(SRC).with_suffix("").parts))
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "emogrid":
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "emogrid"}
        graph[name] = {t for t in targets if t in modules and t not in (name, "emogrid")}
    return graph


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_the_docstring_states_the_stage_order():
    assert " -> ".join(STAGES) in emogrid.__doc__


def test_top_level_holds_only_stages_and_shared_modules():
    entries = {p.stem for p in SRC.glob("*.py")} | {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    assert entries - set(STAGES) - TOP_LEVEL == set()
    for stage in STAGES:
        doc = ast.get_docstring(ast.parse((SRC / stage / "__init__.py").read_text())) or ""
        assert "Reads:" in doc and "Writes:" in doc and "Imports:" in doc, stage


def test_no_stage_imports_a_later_stage():
    graph = _imports(_modules())
    later = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                   if _stage(a) and _stage(b) and STAGES.index(_stage(b)) > STAGES.index(_stage(a)))
    top_into_stages = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                             if not _stage(a) and a not in ENTRY and _stage(b))
    assert later == [] and top_into_stages == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert _cycles(_imports(_modules())) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
