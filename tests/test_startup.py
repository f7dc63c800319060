"""What starting dagentic imports: the regression guard of the fast CLI (issue 13).

Speed is measured by tests/benchmarks/bench_startup.py; these tests do not look at the
clock. They check, in fresh interpreters, that the heavy modules load only when their
feature is used: a new top-level import of numpy, duckdb, httpx, the OpenTelemetry SDK or a
model library would slow every command down again.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import dagentic
import pytest

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "plans" / "hello.yaml"

# Loaded only by the features that need them: models, memory, SQL, the web, tracing's
# exporters, the sandbox backends, charts.
HEAVY = [
    "docker",
    "duckdb",
    "httpcore",
    "httpx",
    "json_repair",
    "llama_cpp",
    "lxml",
    "matplotlib",
    "numpy",
    "openai",
    "opentelemetry.exporter",
    "opentelemetry.sdk",
    "sentence_transformers",
    "sqlglot",
    "tantivy",
    "tenacity",
    "torch",
    "trafilatura",
    "transformers",
]
# dagentic's own modules that only running a plan, asking or remembering needs.
HEAVY_OWN = [
    "dagentic.agent",
    "dagentic.executor",
    "dagentic.planner",
    "dagentic.tracing",
]


def loaded_by(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` (in an empty folder,
    where a run leaves its trace)."""
    script = (
        code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)), file=sys.__stderr__)"
    )
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.splitlines()[-1]))


def cli(*args: str) -> str:
    """Run the console script's entry point with ``args``; exit codes are the CLI's."""
    return textwrap.dedent(f"""\
        import sys
        sys.argv = ["dagentic", *{list(args)!r}]
        from dagentic.cli import main
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None), f"dagentic exited with {{exc.code}}"
        """)


def present(modules: set[str], names: list[str]) -> list[str]:
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


def test_import_dagentic_loads_no_third_party_module() -> None:
    before = loaded_by("pass")
    added = loaded_by("import dagentic") - before
    outside = sorted(
        m for m in added if m.split(".")[0] not in sys.stdlib_module_names | {"dagentic"}
    )
    assert outside == []
    assert sorted(m for m in added if m.startswith("dagentic.")) == []


def test_public_names_load_on_first_use() -> None:
    # The first use of a name imports its module, and only what that module needs.
    modules = loaded_by("from dagentic import Plan, tool, ToolRegistry")
    assert "dagentic.plan" in modules
    assert present(modules, HEAVY + HEAVY_OWN + ["pydantic_settings", "structlog"]) == []


@pytest.mark.parametrize(
    "args",
    [["--help"], ["validate", str(HELLO)], ["tools", "--json"], ["schema"]],
    ids=["help", "validate", "tools", "schema"],
)
def test_cli_commands_that_run_nothing_load_no_heavy_module(args: list[str]) -> None:
    modules = loaded_by(cli(*args))
    assert "dagentic.plugins.web" in modules or args == ["schema"]
    assert present(modules, HEAVY + HEAVY_OWN + ["opentelemetry"]) == []


def test_help_loads_neither_settings_nor_logging() -> None:
    modules = loaded_by(cli("--help"))
    assert present(modules, ["pydantic_settings", "structlog", "dagentic.settings"]) == []


def test_running_a_plan_loads_what_it_uses_and_no_more() -> None:
    # hello.yaml only logs: no model, memory, SQL, web or sandbox is needed.
    modules = loaded_by(cli("run", str(HELLO), "--json"))
    assert "dagentic.executor" in modules
    unused = [m for m in HEAVY if m != "opentelemetry.sdk"]
    assert present(modules, unused) == []


def test_the_lazy_names_agree_with_all_and_the_type_checking_imports() -> None:
    tree = ast.parse((ROOT / "runtime" / "__init__.py").read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    )
    typed = {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    lazy = {name: module for module, names in dagentic._EXPORTS.items() for name in names}
    assert typed == lazy
    assert sorted(lazy) == sorted(dagentic.__all__)
    assert set(dagentic.__all__) <= set(dir(dagentic))
