"""The package's shape, read from source with `ast` (nothing imported): no import circles, imports at the top
(inside functions only for heavy optional dependencies), every module placed in `mia_nb.versions`, and no stage
module loose at the top of the package."""

from __future__ import annotations

import ast
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from mia_nb import versions

PACKAGE = versions.PACKAGE
# The only modules directly under mia_nb/: the study's shared context. Every stage lives in a subpackage.
TOP_LEVEL = {"__init__", "__main__", "config", "layout", "store", "study", "tables", "versions"}
# Third-party packages a function may import inside its body, because importing them at module level would
# slow every import of mia_nb or fail without them: Ray is an optional extra (`.[ray]`, engine.backend: ray);
# Opacus (DP-SGD) and laplace-torch (LLLA) take one to three seconds each to import and serve one defense each.
LAZY_OK = {"ray", "opacus", "laplace"}


def module_name(path: Path) -> str:
    """A module's dotted path below `mia_nb`, as `versions.modules()` names it ("data.splits", "data.__init__")."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


@cache
def parsed() -> dict[str, ast.Module]:
    """Every module of the package, parsed, by its name in `versions.modules()`."""
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8"), filename=str(p))
            for p in sorted(PACKAGE.rglob("*.py"))}


def absolute(node: ast.ImportFrom, module: str) -> str:
    """The absolute module an ImportFrom names (resolving `from . import x` against `module`)."""
    if not node.level:
        return node.module or ""
    package = ["mia_nb", *module.split(".")[:-1]]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def internal_targets(node: ast.Import | ast.ImportFrom, module: str) -> set[str]:
    """The package's modules an import statement loads by name (`from mia_nb.data import splits` -> data.splits)."""
    known = set(parsed())

    def name_of(dotted: str) -> str | None:
        if dotted != "mia_nb" and not dotted.startswith("mia_nb."):
            return None
        rest = dotted.removeprefix("mia_nb").removeprefix(".")
        if rest in known:
            return rest
        init = f"{rest}.__init__" if rest else "__init__"
        return init if init in known else None

    if isinstance(node, ast.Import):
        found = {name_of(a.name) for a in node.names}
    else:
        source = absolute(node, module)
        found = {name_of(f"{source}.{a.name}") or name_of(source) for a in node.names}
    return found - {None}


def is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: top level and inside `try` / `if` / `with` blocks and class
    bodies, but not under `if TYPE_CHECKING:` (annotations only, never run) nor inside a function."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                found.append(stmt)
            elif isinstance(stmt, ast.If):
                if not is_type_checking(stmt.test):
                    visit(stmt.body)
                visit(stmt.orelse)
            elif isinstance(stmt, ast.Try):
                for block in (stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody):
                    visit(block)
            elif isinstance(stmt, (ast.With, ast.ClassDef)):
                visit(stmt.body)
    visit(tree.body)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports at module level."""
    return {module: {t for node in module_level_imports(tree) for t in internal_targets(node, module)} - {module}
            for module, tree in parsed().items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import circle per strongly connected group of modules (Tarjan), each as a closed path a -> ... -> a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [closed_path(graph, group) for group in groups]


def closed_path(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle through the group's first module (breadth-first inside the group)."""
    start = min(group)
    parent: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    path = [v]
                    while parent[path[-1]] is not None:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


def nested_imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement inside a function body, with the function's name."""
    out: dict[ast.AST, str] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    out.setdefault(node, fn.name)  # the outermost function of a nested one
    return sorted(out.items(), key=lambda pair: pair[0].lineno)


def imported_roots(node: ast.Import | ast.ImportFrom) -> set[str]:
    """The top-level packages an import statement loads ("ray" for `from ray.util.joblib import x`)."""
    if isinstance(node, ast.Import):
        return {a.name.split(".")[0] for a in node.names}
    return {"mia_nb" if node.level else (node.module or "").split(".")[0]}


# --- the checks on the helpers themselves (they must be able to fail) ---

def test_circles_finds_a_cycle_and_only_a_cycle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    found = circles({"a": {"b"}, "b": {"a"}, "x": {"y"}, "y": {"x", "a"}})
    assert sorted(found) == [["a", "b", "a"], ["x", "y", "x"]]


def test_import_reading_resolves_names_levels_and_type_checking():
    tree = ast.parse("from __future__ import annotations\nfrom typing import TYPE_CHECKING\n"
                     "from mia_nb.data import splits\nfrom mia_nb.attacks.scores import softmax\n"
                     "import mia_nb.store\nfrom . import metrics\nfrom mia_nb import REPO_ROOT\n"
                     "if TYPE_CHECKING:\n    from mia_nb.study import Study\n"
                     "def f():\n    import ray\n    from mia_nb.config import load_profile\n")
    targets = {t for node in module_level_imports(tree) for t in internal_targets(node, "attacks.evaluation")}
    assert targets == {"data.splits", "attacks.scores", "store", "attacks.metrics", "__init__"}
    nested = nested_imports(tree)
    assert [(imported_roots(n), fn) for n, fn in nested] == [({"ray"}, "f"), ({"mia_nb"}, "f")]


# --- the package ---

def test_no_import_circles():
    found = circles(import_graph())
    assert not found, "import circles among mia_nb's modules (module-level imports):\n" + "\n".join(
        "  " + " -> ".join(c) for c in found)


def test_imports_inside_functions_only_for_heavy_optional_dependencies():
    offenders = [f"  mia_nb/{module.replace('.', '/')}.py:{node.lineno} in {fn}(): {ast.unparse(node)}"
                 for module, tree in parsed().items() for node, fn in nested_imports(tree)
                 if not imported_roots(node) <= LAZY_OK]
    assert not offenders, (f"{len(offenders)} imports inside functions; move them to the top of the module "
                           f"(only {sorted(LAZY_OK)} may be imported lazily):\n" + "\n".join(offenders))


def says_why(lines: list[str], lineno: int) -> bool:
    """Whether the import at `lineno` (1-based) has a comment on its line or on the import lines just above it."""
    i = lineno - 1
    while i >= 0:
        text = lines[i].strip()
        if "#" in text:
            return True
        if i < lineno - 1 and not text.startswith(("import ", "from ")):
            return False
        i -= 1
    return False


def test_each_lazy_import_says_why():
    """A lazy import of a heavy dependency carries a comment (docs/CONVENTIONS.md): on its line or just above."""
    offenders = []
    for module, tree in parsed().items():
        lines = (PACKAGE / f"{module.replace('.', '/')}.py").read_text(encoding="utf-8").splitlines()
        offenders += [f"  mia_nb/{module.replace('.', '/')}.py:{node.lineno} in {fn}(): {ast.unparse(node)}"
                      for node, fn in nested_imports(tree)
                      if imported_roots(node) <= LAZY_OK and not says_why(lines, node.lineno)]
    assert not offenders, "lazy imports without a comment saying why:\n" + "\n".join(offenders)


def test_says_why_reads_a_block_of_imports():
    lines = ["def f():", '    """Doc."""', "    # Opacus takes seconds to import", "    import opacus",
             "    from opacus import x", "", "def g():", "    import ray", "    import ray.util"]
    assert says_why(lines, 4) and says_why(lines, 5)
    assert not says_why(lines, 8) and not says_why(lines, 9)


def test_every_module_is_placed_in_the_code_versions():
    depends = {m for mods in versions.DEPENDS.values() for m in mods}
    unplaced = [m for m in versions.modules() if m not in depends and m not in versions.NOT_STORED
                and m.split(".")[0] not in versions.NOT_STORED]
    assert not unplaced, ("modules in no store kind's DEPENDS and not in NOT_STORED (mia_nb/versions.py); add each "
                          f"to the kinds it makes or give the reason it makes none: {unplaced}")
    stale = [name for name in versions.NOT_STORED
             if name not in versions.modules() and not any(m.startswith(f"{name}.") for m in versions.modules())]
    assert not stale, f"NOT_STORED names no module or subpackage of mia_nb: {stale}"
    both = [m for m in depends if m in versions.NOT_STORED or m.split(".")[0] in versions.NOT_STORED]
    assert not both, f"modules both in DEPENDS and in NOT_STORED: {sorted(both)}"
    assert all(reason.strip() for reason in versions.NOT_STORED.values())


def test_stages_live_in_subpackages():
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in TOP_LEVEL)
    assert not loose, f"modules directly under mia_nb/ that belong in a stage subpackage: {loose}"
    for sub in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert (sub / "__init__.py").is_file(), f"mia_nb/{sub.name}/ has no __init__.py"
        doc = ast.get_docstring(parsed()[f"{sub.name}.__init__"])
        assert doc, f"mia_nb/{sub.name}/__init__.py has no docstring saying what the room holds"


def test_no_module_of_the_package_is_ignored_by_git():
    """A fresh clone must hold every module: an ignore rule such as `data/` once hid mia_nb/data/ from git."""
    root = PACKAGE.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    files = [str(p.relative_to(root)) for p in sorted(PACKAGE.rglob("*.py"))]
    out = subprocess.run(["git", "check-ignore", "--no-index", *files], cwd=root, capture_output=True, text=True)
    assert out.stdout.strip() == "", f"ignored by .gitignore, so missing from a fresh clone:\n{out.stdout}"
