"""The README's sentence on which outlier_tui modules import MLX stays true of the code.

An import graph over outlier_tui and engine (imports inside functions count: they run
when the function does; imports under TYPE_CHECKING do not). An outlier_tui module
"imports MLX" when it imports mlx or mlx_lm, or an engine module from which they are
reachable. `from engine import Engine` counts as importing engine.worker (the package's
lazy __getattr__); engine's plain-data modules (engine.api, engine.wire, ...) import no MLX.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("outlier_tui", "engine")
MLX = {"mlx", "mlx_lm"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, top_level_only: bool) -> list[ast.Import | ast.ImportFrom]:
    """Import statements, skipping TYPE_CHECKING blocks (and function bodies if asked)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit_one(other)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return
        visit(node)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> what it imports: modules of outlier_tui and engine, and "mlx" for mlx/mlx_lm."""
    files = _files()
    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in files.items()}
    packages = {name for name, path in files.items() if path.name == "__init__.py"}

    def bound_at_top(package: str) -> set[str]:
        names = set()
        for node in _imports(trees[package], top_level_only=True):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        for node in ast.iter_child_nodes(trees[package]):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
        return names

    def lazy(package: str) -> list[ast.Import | ast.ImportFrom]:
        """Imports inside the package's module-level __getattr__ (its lazily provided names)."""
        for node in ast.iter_child_nodes(trees[package]):
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
                return _imports(node, top_level_only=False)
        return []

    def targets(name: str, nodes: list[ast.Import | ast.ImportFrom]) -> set[str]:
        package = name if name in packages else name.rpartition(".")[0]
        out: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                bases = [alias.name for alias in node.names]
                names: list[str] = []
            else:
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                bases, names = [base], [alias.name for alias in node.names]
            for base in bases:
                if base.split(".")[0] in MLX:
                    out.add("mlx")
                    continue
                out.update(p for p in _parents(base) if p in files)
                for item in names:
                    if f"{base}.{item}" in files:
                        out.add(f"{base}.{item}")
                    elif base in packages and item not in bound_at_top(base):
                        out |= targets(base, lazy(base))
        return out - {name}

    graph = {}
    for name, tree in trees.items():
        graph[name] = targets(name, _imports(tree, top_level_only=name in packages))
        graph[name].update(p for p in _parents(name) if p in files and p != name)  # a package's __init__ runs first
    return graph


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def importing_mlx(graph: dict[str, set[str]]) -> set[str]:
    """Every module from which "mlx" can be reached."""
    reach: set[str] = set()
    changed = True
    while changed:
        changed = False
        for module, deps in graph.items():
            if module not in reach and ("mlx" in deps or deps & reach):
                reach.add(module)
                changed = True
    return reach


def outlier_tui_importing_mlx(graph: dict[str, set[str]]) -> set[str]:
    """outlier_tui modules that import mlx/mlx_lm, or an engine module that does (at any
    depth). Not through other outlier_tui modules: the app reaches MLX only by calling
    engine_adapter, which is the boundary the README names."""
    engine = importing_mlx({m: deps for m, deps in graph.items() if m.split(".")[0] == "engine"})
    return {m for m, deps in graph.items() if m.split(".")[0] == "outlier_tui" and ("mlx" in deps or deps & engine)}


def readme_list() -> list[str]:
    """The modules and folders the README's layout section names as importing MLX."""
    readme = (ROOT / "docs" / "how-it-works.md").read_text(encoding="utf-8")
    found = re.search(r"MLX is imported only by\s+(.*?)\.\s", readme, re.S)
    assert found, "docs/how-it-works.md: the layout section's sentence 'MLX is imported only by ...' is missing"
    return [name for name in re.findall(r"`([^`]+)`", found.group(1)) if name.startswith("outlier_tui/")]


def _matches(module: str, entries: list[str]) -> bool:
    path = module.replace(".", "/")
    return any(path == e.removesuffix(".py") or (e.endswith("/") and path.startswith(e)) for e in entries)


def test_the_graph_sees_mlx_through_engine_modules_and_lazy_imports():
    graph = import_graph()
    engine = importing_mlx({m: deps for m, deps in graph.items() if m.split(".")[0] == "engine"})
    direct = {"engine.worker", "engine.loader", "engine.expert_streamer", "engine.streamed_experts"}
    assert direct <= engine  # direct mlx imports
    assert not {"engine", "engine.api", "engine.wire", "engine.errors", "engine.remote", "engine.fake"} & engine
    ui = outlier_tui_importing_mlx(graph)
    assert "outlier_tui.engine_adapter" in ui  # `from engine import Engine`, inside a function
    assert "outlier_tui.server.fd_limit" in ui  # `import mlx_lm.utils`, inside a function
    assert not {"outlier_tui.app.run", "outlier_tui.plain.main", "outlier_tui.core.format"} & ui


def test_readme_names_exactly_the_outlier_tui_modules_that_import_mlx():
    entries = readme_list()
    mlx = sorted(outlier_tui_importing_mlx(import_graph()))
    unnamed = [m for m in mlx if not _matches(m, entries)]
    assert not unnamed, f"these import MLX but the README does not say so: {unnamed}"
    named_but_clean = [e for e in entries if not any(_matches(m, [e]) for m in mlx)]
    assert not named_but_clean, f"the README names these as importing MLX, but they do not: {named_but_clean}"
