"""The documentation site builds, and what it shows stays true to the code.

The reference pages are generated at build time (docs/_hooks/reference.py); these tests
hold the hand-written pages to the code: every public name has an API entry, every
expression function and failure mode is described, and every ``dagentic`` command line
the pages and the README show names real commands and options.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path
from types import ModuleType

import dagentic
import pytest
from dagentic import FUNCTIONS, FailureMode

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
CONSOLE_BLOCK = re.compile(r"^([ \t]*)```console\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)
PYTHON_BLOCK = re.compile(r"^([ \t]*)```python[^\n]*\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "_hooks/reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def _help_pages() -> dict[tuple[str, ...], str]:
    return {tuple(page["path"]): page["help"] for page in _hook().cli_help_pages()}


@pytest.mark.slow
def test_site_builds_with_strict_checks(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", site],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a safety net: the build takes 15-30 s
        check=False,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-5000:]}"
    generated = {
        "reference/cli/index.html": ["dagentic sandbox run", "dagentic index build"],
        "reference/settings/index.html": ["DAGENTIC_SANDBOX__LIMITS__MEMORY", "[sandbox.limits]"],
        "reference/plan/index.html": ["run_if_skipped", "allow_untrusted"],
        "reference/tools/index.html": ["code.python", "web.fetch", "untrusted"],
        "reference/api/running/index.html": ["run_plan", "RunResult"],
        "tutorial/index.html": ["dagentic-report"],
    }
    for page, texts in generated.items():
        html = (site / page).read_text(encoding="utf-8")
        for text in texts:
            assert text in html, f"{page} does not show {text!r}"


def test_every_public_name_has_an_api_reference_entry() -> None:
    documented: set[str] = set()
    for page in (DOCS / "reference/api").glob("*.md"):
        documented |= set(re.findall(r"^::: dagentic\.(\w+)$", page.read_text(), re.MULTILINE))
    missing = sorted(set(dagentic.__all__) - documented)
    assert not missing, f"add '::: dagentic.NAME' to a page in docs/reference/api/: {missing}"


def test_expressions_page_describes_every_function() -> None:
    text = (DOCS / "reference/expressions.md").read_text(encoding="utf-8")
    missing = [name for name in [*FUNCTIONS, "default"] if f"`{name}(" not in text]
    assert not missing, f"docs/reference/expressions.md does not describe {missing}"


def test_results_page_describes_every_failure_mode() -> None:
    text = (DOCS / "reference/results.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(\w+)` \|", text, re.MULTILINE))
    missing = [mode.value for mode in FailureMode if mode.value not in rows]
    assert not missing, f"docs/reference/results.md has no row for {missing}"


def _command_lines() -> list[tuple[str, str]]:
    """Every ``$ dagentic ...`` line of a console block in the docs and the README."""
    found = []
    for path in [*PAGES, ROOT / "README.md"]:
        for block in CONSOLE_BLOCK.finditer(path.read_text(encoding="utf-8")):
            for line in block.group(2).splitlines():
                command = line.strip().removeprefix("$ ")
                if command != line.strip() and command.startswith("dagentic "):
                    found.append((str(path.relative_to(ROOT)), command))
    return found


def test_docs_show_dagentic_commands() -> None:
    # Without this, the test below could silently check nothing.
    assert len(_command_lines()) > 20


@pytest.mark.parametrize(("page", "command"), _command_lines())
def test_dagentic_commands_shown_in_docs_exist(page: str, command: str) -> None:
    words = shlex.split(command, comments=True)[1:]
    helps = _help_pages()
    path: tuple[str, ...] = ()
    while words and (*path, words[0]) in helps:
        path = (*path, words.pop(0))
    assert path, f"{page}: `{command}` names no dagentic command"
    shown = helps[path]
    for word in words:
        if re.match(r"^--?[a-z]", word):
            option = word.split("=", 1)[0]
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", shown), (
                f"{page}: `{command}`: dagentic {' '.join(path)} has no option {option}"
            )


def _programs() -> list[tuple[str, str]]:
    """Python blocks of the docs and the README that are whole programs (they call
    ``anyio.run``), except those that need a model."""
    found = []
    for path in [*PAGES, ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        for block in PYTHON_BLOCK.finditer(text):
            code = textwrap.dedent(block.group(2))
            if "anyio.run(" in code and "Agent(" not in code:
                found.append((str(path.relative_to(ROOT)), code))
    return found


def test_docs_show_whole_programs() -> None:
    assert len(_programs()) >= 4


@pytest.mark.slow
@pytest.mark.parametrize(("page", "code"), _programs())
def test_programs_shown_in_docs_run(page: str, code: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGENTIC_")}
    env["DAGENTIC_RUNS_DIR"] = str(tmp_path / "runs")  # no traces in the checkout
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,  # the snippets use the repository's plans and sample data
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (
        f"{page}: a program exited {done.returncode}:\n{done.stderr[-3000:]}"
    )
    assert "succeeded" in done.stdout, f"{page}: the program printed {done.stdout!r}"


def test_readme_is_a_landing_page_whose_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200, "README.md is the landing page: keep it short"
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links, "README.md links to no page of the docs"
    broken = [link for link in links if not (ROOT / link).is_file()]
    assert not broken, f"README.md links to missing pages: {broken}"
