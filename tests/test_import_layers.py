"""The package's import graph: no cycle, lower layers never import higher ones, every module imports alone.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` of an
``mpdit_bench`` module, at module level or inside a function, relative imports resolved, ``from pkg import
name`` counted as an import of ``pkg.name`` when that is a submodule. Importing ``a.b.c`` also runs the
``__init__`` of ``a.b``, so those packages are edges too (except the importer's own packages, which are
already running).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import mpdit_bench

PACKAGE_DIR = Path(mpdit_bench.__file__).resolve().parent
ROOT = PACKAGE_DIR.name

# The layers, bottom up. A part is a subpackage or a top-level module of the package. Lower parts list
# what they may import (their own part always); an entry may name one module of a part, which also allows
# the packages above it (their ``__init__`` runs first). Upper parts list what they must not import.
LOWER: dict[str, set[str]] = {
    "validation": set(),
    "files": set(),
    "progress": set(),
    "registry": set(),
    "plugins": {"validation"},
    "checkpoint": {"files", "plugins", "validation"},
    "components": {"registry"},
    "config": {"validation", "registry", "components"},
    "models": {"config", "validation", "registry", "components", "ppflow.schedule", "ppflow.modules"},
    "ppflow": {"config", "validation", "registry", "components", "models", "checkpoint", "files"},
    "paper": {"config", "validation", "registry", "components", "models", "ppflow"},
    "counting": {"config", "validation", "registry", "components", "models", "ppflow", "paper"},
    "data": {"config", "validation", "files", "progress"},
}
UPPER: dict[str, set[str]] = {
    "engine": {"sweeps", "reports", "bench", "cli"},
    "evaluation": {"sweeps", "reports", "bench", "cli"},
    "imports": {"sweeps", "reports", "bench", "cli"},
    "bench": {"sweeps", "reports", "cli"},
    "sweeps": {"reports", "bench", "cli"},
    "reports": {"bench", "cli"},
    "cli": set(),
    "__main__": set(),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The suite's modules ``name`` imports, directly (the target) or by running a package's ``__init__``."""
    targets: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    # imports under `if TYPE_CHECKING:` only name types for annotations: they never run
    type_only = {id(inner) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                 for stmt in block.body for inner in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, name, path.name == "__init__.py")
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
    own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    edges = set()
    for target in targets:
        if target != ROOT and not target.startswith(ROOT + "."):
            continue
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            step = ".".join(parts[:i])
            if step in modules and step not in own_packages:
                edges.add(step)
    return edges


@cache
def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def allowed(importer: str, target: str) -> bool:
    """The layer rule for one edge of the graph."""
    source, dest = part_of(importer), part_of(target)
    if source == dest or dest == ROOT:
        return True
    if source in UPPER:
        return dest not in UPPER[source]
    inside = target.split(".", 1)[1]
    return any(entry == inside or entry.startswith(inside + ".") or inside.startswith(entry + ".")
               for entry in LOWER[source])


def test_the_graph_reader_sees_every_kind_of_import(tmp_path):
    modules = package_modules()
    source = tmp_path / "probe.py"
    source.write_text("import os\nfrom mpdit_bench import registry\nfrom . import files\n"
                      "def f():\n    import mpdit_bench.models.blocks as b\n    from .ppflow import schedule\n")
    edges = imported_modules(f"{ROOT}.probe", source, modules)
    assert edges == {f"{ROOT}.registry", f"{ROOT}.files", f"{ROOT}.models", f"{ROOT}.models.blocks",
                     f"{ROOT}.ppflow", f"{ROOT}.ppflow.schedule"}


def test_the_cycle_finder_reports_a_cycle_path():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_layer_rule_refuses_upward_imports():
    assert allowed(f"{ROOT}.models.multipatch", f"{ROOT}.ppflow")  # the package __init__ of ppflow.schedule
    assert allowed(f"{ROOT}.models.multipatch", f"{ROOT}.ppflow.schedule")
    assert not allowed(f"{ROOT}.models.multipatch", f"{ROOT}.ppflow.convert")
    assert not allowed(f"{ROOT}.data.latents", f"{ROOT}.engine.distributed")
    assert not allowed(f"{ROOT}.components.upsample", f"{ROOT}.counting.measure")
    assert not allowed(f"{ROOT}.engine.train", f"{ROOT}.sweeps.runner")
    assert allowed(f"{ROOT}.sweeps.pipeline", f"{ROOT}.engine.train")


def test_every_component_module_that_registers_is_imported_by_its_package():
    """The registry is filled by importing ``mpdit_bench.components``; a module it forgets is never listed."""
    modules = package_modules()
    init = f"{ROOT}.components"
    imported = imported_modules(init, modules[init], modules)
    registering = {name for name, path in modules.items()
                   if name.startswith(init + ".") and "@register(" in path.read_text()}
    assert registering and registering <= imported, sorted(registering - imported)


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and any(graph.values())
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_lower_layers_never_import_higher_ones():
    graph = import_graph()
    assert set(LOWER) | set(UPPER) >= {part_of(m) for m in graph if m != ROOT}, \
        "a new part of the package: give it a place in LOWER or UPPER"
    broken = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets if not allowed(m, t))
    assert not broken, "imports against the layering:\n" + "\n".join(broken)


def test_no_module_hides_imports_behind_a_module_getattr():
    lazy = [name for name, path in package_modules().items()
            if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__"
                   for n in ast.parse(path.read_text()).body)]
    assert not lazy, f"modules with a module-level __getattr__: {lazy}"


_IMPORT_EACH_ALONE = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "{root}" or m.startswith("{root}.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ":\\n" + traceback.format_exc())
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    names = sorted(n for n in package_modules() if n != f"{ROOT}.__main__")
    path = [str(PACKAGE_DIR.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run([sys.executable, "-c", _IMPORT_EACH_ALONE.format(root=ROOT), *names],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
