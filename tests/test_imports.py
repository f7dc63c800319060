"""dagentic's modules import one another without cycles.

Imports inside functions count too (a lazy import hides a cycle, it does not break it);
imports under ``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"runtime": "dagentic", "plugins": "dagentic.plugins", "sandbox": "dagentic.sandbox"}


def _modules() -> dict[str, Path]:
    """Every module of the import package, by its dotted name."""
    modules = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` (at ``path``) imports when it runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target, *(f"{target}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        found.update(t for t in targets if t in modules and t != name)
    return found


def test_modules_import_each_other_without_cycles() -> None:
    modules = _modules()
    assert "dagentic.tracing" in modules and "dagentic.plugins.sql" in modules
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_edges_from((name, other) for other in _imported(name, path, modules))
    cycles = sorted(" -> ".join([*cycle, cycle[0]]) for cycle in nx.simple_cycles(graph))
    assert not cycles, (
        "import cycles (move what both sides need into a module of its own, as "
        "dagentic.attributes holds the span attribute names):\n" + "\n".join(cycles)
    )


def test_the_cycle_check_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "tracing.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from .executor import Executor\n"
        "def exporters():\n"
        "    from .runfiles import JsonlSpanExporter\n",
        encoding="utf-8",
    )
    modules = {name: module for name in ("dagentic.tracing", "dagentic.runfiles")}
    modules["dagentic.executor"] = module
    assert _imported("dagentic.tracing", module, modules) == {"dagentic.runfiles"}


def test_a_run_in_process_imports_no_ray() -> None:
    """Ray is an optional extra: only the ray backend imports it."""
    import subprocess
    import sys

    script = (
        "import sys, anyio\n"
        "from dagentic import Executor, load_tools, ToolRegistry\n"
        "from tests.blind import blind_settings\n"
        "plan = {'version': 1, 'name': 'p', 'steps': [{'id': 'a', 'tool': 'notify.log', "
        "'args': {'message': 'hi'}}]}\n"
        "executor = Executor(ToolRegistry(load_tools()), settings=blind_settings(), "
        "journal=None, tracing=None)\n"
        "result = anyio.run(executor.run, plan)\n"
        "print(result.status.value, sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.stdout == "succeeded []\n", done.stderr
