"""The package's shape, checked: the trainer knows nothing of the synthetic world (it registers
itself), no two modules import each other (directly or around a loop, counting imports inside
functions and leaving out ``if TYPE_CHECKING:`` blocks, which never run), and every third-party
module the package and its chapters import is a declared dependency (none declared that it does not import)."""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from textnorm.paths import repo_root

ROOT = repo_root()
PACKAGE = ROOT / "textnorm"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(module: str, path: Path, tree: ast.AST | None = None) -> list[str]:
    """Absolute names of what ``module`` imports (a submodule where ``from pkg import sub`` names one)."""
    mods = _modules()
    names = []
    for node in _runtime_nodes(tree if tree is not None else ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(package + ([node.module] if node.module else []))
            for alias in node.names:
                names.append(f"{base}.{alias.name}" if f"{base}.{alias.name}" in mods else base)
    return names


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for module, path in mods.items():
        deps = set()
        for name in _imports(module, path):
            while name and name not in mods:
                name = name.rpartition(".")[0]
            if name and name.startswith("textnorm") and name != module:
                deps.add(name)
        graph[module] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_the_trainer_imports_nothing_from_the_synthetic_world():
    # directly or through any other module (textnorm.plugins names the plugin modules as text, imported by
    # the registry only when a registry is read: the trainer's code paths stay free of the synthetic world)
    graph = _graph()
    bad = {
        m: sorted(d for d in _reachable(graph, m) if d.startswith("textnorm.synth"))
        for m in graph
        if m.startswith("textnorm.finetune")
    }
    bad = {m: d for m, d in bad.items() if d}
    assert not bad, f"textnorm.finetune reaches the synthetic world: {bad}"


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _declared(*extras: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for e in extras for d in project["optional-dependencies"][e]]
    return {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}


def test_declared_dependencies_are_what_the_package_imports():
    modules = _modules()
    third = set()
    for module, path in modules.items():
        for name in _imports(module, path):
            top = name.split(".")[0]
            if top and top != "textnorm" and top not in sys.stdlib_module_names:
                third.add(top)
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):  # the chapters run on the same dependencies
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                code = "\n".join(
                    line for line in "".join(cell["source"]).splitlines() if not line.startswith(("%", "!"))
                )
                for name in _imports("notebook", Path(nb.name), ast.parse(code)):
                    top = name.split(".")[0]
                    if top and top != "textnorm" and top not in sys.stdlib_module_names:
                        third.add(top)
    dists = packages_distributions()
    imported = {d.lower().replace("_", "-") for top in third for d in dists.get(top, [top])}
    missing = imported - _declared("book")  # the chapters run with the book extra
    assert missing == set(), f"imported but not declared in pyproject.toml: {missing}"
    unused = _declared() - imported
    assert unused == set(), f"declared but never imported by the package or a chapter: {unused}"


def test_the_lock_file_pins_every_declared_dependency_within_its_range():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    reqs = [Requirement(d) for d in project["dependencies"]]
    reqs += [Requirement(d) for deps in project["optional-dependencies"].values() for d in deps]
    for req in reqs:
        name = req.name.lower().replace("_", "-")
        if name == "textnorm":  # the extras' reference to this package itself
            continue
        assert name in pins, f"{name} is declared in pyproject.toml but not pinned in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req}"
