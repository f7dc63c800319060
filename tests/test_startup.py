"""What starting dagentic imports: the regression guard of the fast CLI (issue 13).

Speed is measured by tests/benchmarks/bench_startup.py; these tests do not look at the
clock. They check, in fresh interpreters, that the heavy modules load only when their
feature is used: a new top-level import of numpy, duckdb, httpx, the OpenTelemetry SDK or a
model library would slow every command down again.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from importlib.metadata import entry_points
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
    assert ("dagentic.plugins.web" in modules) == (args[0] in ("validate", "tools"))
    assert present(modules, HEAVY + HEAVY_OWN + ["opentelemetry"]) == []


# What `dagentic --help` does without: the plugins' command groups are read from their
# source (dagentic._plugin_commands), so no plugin, and none of pydantic, is imported; the
# entry points are read without importlib.metadata; rich's Markdown and tracebacks are not
# loaded for typer's help formatter.
NOT_FOR_HELP = [
    "anyio",
    "dagentic.plugin_manager",
    "dagentic.settings",
    "dagentic.tools",
    "docstring_parser",
    "importlib.metadata",
    "markdown_it",
    "pluggy",
    "pydantic",
    "pydantic_settings",
    "pygments",
    "rich.markdown",
    "rich.traceback",
    "structlog",
    "yaml",
]


def test_help_loads_no_plugin_settings_logging_or_pydantic() -> None:
    modules = loaded_by(cli("--help"))
    plugins = sorted(ep.value for ep in entry_points(group="dagentic.plugins"))
    assert "dagentic.plugins.web" in plugins
    assert present(modules, NOT_FOR_HELP + plugins) == []
    assert "typer.rich_utils" in modules


def help_text(prepare: str = "") -> str:
    """What ``dagentic --help`` prints in a fresh interpreter, after ``prepare``."""
    script = f"{prepare}\n{cli('--help')}"
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**os.environ, "COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"},
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_help_is_the_same_as_with_every_plugin_and_all_of_rich_loaded() -> None:
    fast = help_text()
    assert re.search(r"^\W*index\s+Build and query the local search index", fast, re.MULTILINE)
    loaded = help_text(
        "import rich.markdown, rich.traceback, typer.rich_utils\n"
        "from dagentic.cli import add_plugin_commands\n"
        "add_plugin_commands()"
    )
    assert fast == loaded


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


def test_logging_an_exception_needs_no_rich_traceback() -> None:
    # structlog is imported without rich.traceback (display.safe_log_event renders the
    # exceptions the CLI logs); a log line with an exception shows its traceback still.
    assert present(loaded_by(cli("validate", str(HELLO))), ["rich.traceback", "pygments"]) == []
    script = cli("validate", str(HELLO)) + textwrap.dedent("""\
        import structlog
        try:
            1 / 0
        except ZeroDivisionError:
            structlog.get_logger().error("boom", exc_info=True)
        """)
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "] boom\nTraceback (most recent call last):\n" in done.stderr
    assert "\nZeroDivisionError: division by zero" in done.stderr
