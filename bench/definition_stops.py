"""Count the stops a value makes through src/emogrid: the functions that receive it, their modules, the names it takes.

    python bench/definition_stops.py emogrid.data.prepare:run:data_cfg [--whole]

Starting from one parameter (or local name) of one function, every call that passes the value, or a
piece of it (`defn`, `defn["hub"]`, `defn.hub`, `{**defn, ...}`), passes it on to the matching
parameter of the callee (a function of src/emogrid, found through the caller's imports or its own
module; `Class.method` too). Inside a function the value spreads through assignments of such
pieces and of what a stop returns as a dict or a definition type (`cfg = subset_settings(defn)`);
values computed from it (`len(defn["labels"])`) are not the value. `--whole` follows the value
itself only (`defn`, `{**defn, ...}`, what a stop returns as a dict or definition), not its pieces.
Reads the code as text (ast); runs nothing. Issue 24 asks this of the dataset definition, from
`emogrid prepare` to the subset files.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_file(module: str) -> Path | None:
    base = SRC / module.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


_trees: dict[str, ast.Module] = {}


def _tree(module: str) -> ast.Module | None:
    if module not in _trees:
        path = _module_file(module)
        _trees[module] = ast.parse(path.read_text(encoding="utf-8")) if path else None
    return _trees[module]


def _definitions(module: str) -> dict[str, ast.AST]:
    tree = _tree(module)
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))} if tree else {}


def _imports(module: str, func: ast.AST) -> dict[str, tuple[str, str]]:
    """name -> (module, name) of `from emogrid... import name` at top level and inside `func`."""
    out = {}
    for node in [*_tree(module).body, *ast.walk(func)]:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("emogrid"):
            for alias in node.names:
                out[alias.asname or alias.name] = (node.module, alias.name)
    return out


def _resolve(module: str, func: ast.AST, call: ast.Call):
    """(module, function node, qualified name) of the callee, or None outside src/emogrid."""
    imports = _imports(module, func)

    def lookup(name):
        where, real = imports.get(name, (module, name))
        node = _definitions(where).get(real)
        return (where, node, real) if node is not None else None

    target = call.func
    if isinstance(target, ast.Name):
        found = lookup(target.id)
        if found and isinstance(found[1], ast.ClassDef):
            return None  # a constructor: the value is stored, not passed through a function body
        return found
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
        found = lookup(target.value.id)
        if found and isinstance(found[1], ast.ClassDef):
            for node in found[1].body:
                if isinstance(node, ast.FunctionDef) and node.name == target.attr:
                    return found[0], node, f"{found[2]}.{node.name}"
    return None


# what a callee returns that still is the value (reshaped): a dict, or one of these types
CARRIERS = {"dict", "DatasetDefinition", "GoEmotionsSource", "HubRef", "TableSource"}


WHOLE = False  # --whole: follow the value itself only, not its pieces


def _carries(expr: ast.AST, names: set[str], module: str, func: ast.AST) -> bool:
    """Does `expr` hold the value or a piece of it (not something computed from it)?"""
    if isinstance(expr, ast.Name):
        return expr.id in names
    if WHOLE and isinstance(expr, ast.Dict):  # {**defn, "name": ...}: the value reshaped
        return any(k is None and _carries(v, names, module, func) for k, v in zip(expr.keys, expr.values))
    if WHOLE and not isinstance(expr, ast.Call):
        return False
    if isinstance(expr, (ast.Subscript, ast.Attribute, ast.Starred)):
        return _carries(expr.value, names, module, func)
    if isinstance(expr, ast.Dict):
        return any(_carries(v, names, module, func) for v in expr.values)
    if isinstance(expr, ast.BoolOp):
        return any(_carries(v, names, module, func) for v in expr.values)
    if isinstance(expr, ast.IfExp):
        return _carries(expr.body, names, module, func) or _carries(expr.orelse, names, module, func)
    if isinstance(expr, ast.Call):
        target = expr.func
        if not WHOLE and isinstance(target, ast.Attribute) and target.attr in ("get", "copy") \
                and _carries(target.value, names, module, func):
            return True
        if isinstance(target, ast.Name) and target.id in ("dict", "list", "replace", "deepcopy") and expr.args:
            return _carries(expr.args[0], names, module, func)
        found = _resolve(module, func, expr)
        if found and isinstance(found[1], ast.FunctionDef) and found[1].returns is not None:
            returns = ast.unparse(found[1].returns).split("[")[0].strip("\"'")
            args = [*expr.args, *(kw.value for kw in expr.keywords)]
            return returns in CARRIERS and any(_carries(a, names, module, func) for a in args)
    return False


def _targets(node: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]


def _spread(module: str, func: ast.AST, start: str) -> set[str]:
    """The local names that come to hold the value or a piece of it, to a fixed point."""
    names = {start}
    while True:
        before = len(names)
        for node in ast.walk(func):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                if _carries(node.value, names, module, func):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for t in targets:
                        names.update(n.id for n in [t] if isinstance(n, ast.Name))
        if len(names) == before:
            return names


def _param_for(func: ast.FunctionDef, call: ast.Call, names: set[str], method: bool, module: str,
               caller: ast.AST) -> list[str]:
    params = [a.arg for a in func.args.posonlyargs + func.args.args]
    if method and params and params[0] in ("self", "cls"):
        params = params[1:]
    out = [params[i] for i, arg in enumerate(call.args) if i < len(params) and _carries(arg, names, module, caller)]
    out += [kw.arg for kw in call.keywords if kw.arg and _carries(kw.value, names, module, caller)]
    return out


def walk(module: str, function: str, param: str):
    """{(module, function): names} for every stop, the start included; and the calls per callee."""
    stops: dict[tuple[str, str], set[str]] = {}
    callers: dict[str, set[tuple[str, str]]] = {}
    todo = [(module, function, param)]
    while todo:
        mod, name, par = todo.pop()
        node = _definitions(mod).get(name.split(".")[0])
        if "." in name:
            node = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == name.split(".")[1])
        names = _spread(mod, node, par)
        key = (mod, name)
        if key in stops and names <= stops[key]:
            continue
        stops[key] = stops.get(key, set()) | names
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            found = _resolve(mod, node, call)
            if found is None or not isinstance(found[1], ast.FunctionDef):
                continue
            for p in _param_for(found[1], call, stops[key], "." in found[2], mod, node):
                callers.setdefault(found[2], set()).add(key)
                todo.append((found[0], found[2], p))
    return stops, callers


def main(argv: list[str]) -> int:
    global WHOLE
    WHOLE = "--whole" in argv
    module, function, param = [a for a in argv[1:] if a != "--whole"][0].split(":")
    stops, _ = walk(module, function, param)
    for (mod, name), names in sorted(stops.items()):
        print(f"{mod}.{name}: {', '.join(sorted(names))}")
    modules = {mod for mod, _ in stops}
    print(f"{len(stops)} stops in {len(modules)} modules, "
          f"{sum(len(n) for n in stops.values())} names on the way")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
