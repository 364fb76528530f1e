"""The package layering and the absence of import circles, read from the source with ``ast``.

The layering (docs/architecture.md): ``data_prep`` is the data contract and imports neither other
package; ``inference`` imports ``data_prep`` and never ``dear_train``; ``dear_train`` may import both.
Every import counts for the layering, at module level, inside functions and under ``if TYPE_CHECKING:``
alike (a lazy import still ties the packages together). Circles are looked for twice: among module-level
imports (the ones that run on import, where a circle breaks depending on which module comes first), and
among all imports that run at all (module level plus inside functions; not ``TYPE_CHECKING``), because
two modules that each reach into the other lazily are one concern split in two
(``dear_train.distill`` <-> ``distill_config`` was one).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data_prep", "inference", "dear_train")
FORBIDDEN = {"data_prep": {"inference", "dear_train"}, "inference": {"dear_train"}}


@dataclass(frozen=True)
class Import:
    target: str       # the imported project module (or package) as a dotted name
    line: int
    where: str        # "module level", "inside a function" or "type checking only"


def _module_files() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = _module_files()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(name: str) -> str | None:
    """The project module ``name`` names; None outside the project (a project name that is no module raises)."""
    if name in MODULES:
        return name
    if name.split(".")[0] in PACKAGES:
        raise AssertionError(f"import of {name}, which is no module of the project")
    return None


def _imports(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([node.module] if node.module else []))
        # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one, else pkg itself.
        return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for name in targets(child):
                    try:
                        resolved = _resolve(name)
                    except AssertionError as err:
                        raise AssertionError(f"{path}:{child.lineno}: {err}") from None
                    if resolved is not None:
                        found.append(Import(resolved, child.lineno, where))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, "type checking only" if where == "type checking only" else "inside a function")
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                visit(ast.Module(body=child.body, type_ignores=[]), "type checking only")
                visit(ast.Module(body=child.orelse, type_ignores=[]), where)
            else:
                visit(child, where)

    visit(tree, "module level")
    return found


IMPORTS = {module: _imports(module, path) for module, path in MODULES.items()}


def _layering_violations() -> list[str]:
    bad = []
    for module, imports in IMPORTS.items():
        forbidden = FORBIDDEN.get(module.split(".")[0], set())
        for imp in imports:
            if imp.target.split(".")[0] in forbidden:
                bad.append(f"{MODULES[module].relative_to(ROOT)}:{imp.line}: {module} imports {imp.target} "
                           f"({imp.where})")
    return bad


def _cycles(kinds: tuple[str, ...]) -> list[list[str]]:
    """Strongly connected components of more than one module in the graph of ``kinds`` imports (Tarjan)."""
    graph = {m: sorted({i.target for i in imps if i.where in kinds and i.target != m and i.target in IMPORTS})
             for m, imps in IMPORTS.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                strongconnect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in graph:
        if node not in index:
            strongconnect(node)
    return components


def test_the_scan_sees_the_packages():
    # Guards against a scan that silently finds nothing: the three packages and their known edges are there.
    assert {"data_prep", "inference", "dear_train", "data_prep.schema", "dear_train.cli"} <= set(MODULES)
    assert any(i.target == "data_prep.schema" for i in IMPORTS["inference.metrics"] + IMPORTS["inference.reranker"])


def test_data_prep_imports_neither_other_package_and_inference_never_dear_train():
    assert _layering_violations() == []


def test_no_import_circles_among_module_level_imports():
    assert _cycles(("module level",)) == []


def test_no_import_circles_even_through_lazy_imports():
    assert _cycles(("module level", "inside a function")) == []


def test_no_import_circles_even_through_type_checking_imports():
    # a type annotation that needs the other module is still two modules that know each other (engine/hf.py and
    # engine/kv_slots.py were one such pair, over the decode loop's Row: it lives in engine/types.py now)
    assert _cycles(("module level", "inside a function", "type checking only")) == []


def test_the_checks_catch_what_they_look_for(monkeypatch):
    # The same functions on a made-up graph: a lazy import across the layering, a module-level circle
    # (b <-> c) and a circle closed only by a lazy import (c -> d -> c).
    fake = {
        "data_prep.a": [Import("inference.b", 3, "inside a function")],
        "inference.b": [Import("inference.c", 1, "module level")],
        "inference.c": [Import("inference.b", 1, "module level"), Import("inference.d", 2, "module level")],
        "inference.d": [Import("inference.c", 9, "inside a function"), Import("inference.b", 1, "type checking only")],
    }
    monkeypatch.setattr(sys.modules[__name__], "IMPORTS", fake)
    monkeypatch.setitem(MODULES, "data_prep.a", ROOT / "data_prep" / "a.py")
    assert len(_layering_violations()) == 1 and "inside a function" in _layering_violations()[0]
    assert _cycles(("module level",)) == [["inference.b", "inference.c"]]
    assert _cycles(("module level", "inside a function")) == [["inference.b", "inference.c", "inference.d"]]
