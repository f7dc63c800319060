"""Every import is declared: a plain ``pip install dagentic`` (no extras) imports and runs,
installs one top-level package, and says which extra a missing feature needs.

The install tests build the checkout into a fresh venv (``python -m venv``, then ``pip
install`` from a copy of the checkout, so the build leaves nothing in it) and run the
installed ``dagentic`` from a folder outside the checkout.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_FOLDERS = ("runtime", "plugins", "sandbox")
# Runs inside the sandbox on the sandbox's own Python, never in dagentic's environment.
NOT_DAGENTIC_CODE = {ROOT / "sandbox" / "harness.py"}
NOT_FEATURES = ("dev", "docs", "test")  # extras for working on dagentic, not using it
INSTALL_TIMEOUT = 900  # seconds: a safety net; a warm pip cache installs in about a minute


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert name is not None, requirement
    return re.sub(r"[-_.]+", "-", name.group()).lower()


def declared() -> dict[str, set[str]]:
    """Distribution names by where pyproject.toml declares them: "base" or an extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found = {"base": {_name(r) for r in project["dependencies"]}}
    for extra, requirements in project["optional-dependencies"].items():
        found[extra] = {_name(r) for r in requirements if not r.startswith("dagentic")}
    return found


def third_party_imports() -> dict[str, set[str]]:
    """Top-level modules outside the standard library that dagentic's code imports, with
    the files that import each."""
    imports: dict[str, set[str]] = {}
    for folder in PACKAGE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path in NOT_DAGENTIC_CODE:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "dagentic":
                        imports.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return imports


def test_every_imported_module_comes_from_a_declared_distribution() -> None:
    # The test environment has every extra installed, so each import maps to the
    # distributions that provide it; one of them must be in pyproject.toml.
    features = set().union(*(v for k, v in declared().items() if k not in NOT_FEATURES))
    providers = packages_distributions()
    undeclared = {
        module: sorted(files)
        for module, files in third_party_imports().items()
        if not {_name(d) for d in providers.get(module, [])} & features
    }
    assert undeclared == {}, "add these modules' distributions to pyproject.toml"


def test_the_extras_install_no_base_dependency_again() -> None:
    groups = declared()
    twice = {
        extra: sorted(names & groups["base"])
        for extra, names in groups.items()
        if extra != "base" and names & groups["base"]
    }
    assert twice == {}


# ----------------------------------------------------------------------- a fresh install


@dataclass
class Install:
    bin: Path
    cwd: Path  # outside the checkout
    source: Path  # the copy of the checkout it was built from

    def run(
        self, *args: str | Path, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            cwd=self.cwd,
            env={**clean_env(), **(env or {})},
            timeout=120,
            check=False,
        )

    def dagentic(
        self, *args: str | Path, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run(self.bin / "dagentic", *args, env=env)

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.bin / "python", "-c", code)


def clean_env() -> dict[str, str]:
    """This process's environment without what points Python or dagentic elsewhere."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("DAGENTIC_")}


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    base = tmp_path_factory.mktemp("plain-install")
    source = base / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", ".dagentic", "build", "*.egg-info", "__pycache__", "*_cache", "site"
        ),
    )
    venv = base / "venv"
    env = {**clean_env(), "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    for command in (
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
    ):
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT, check=False
        )
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    cwd = base / "project"
    cwd.mkdir()
    yield Install(venv / "bin", cwd, source)


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_a_plain_install_imports_validates_and_runs_a_plan(install: Install) -> None:
    imported = install.python("import dagentic; print(sorted(dagentic.__all__)[:2])")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == "['Agent', 'AgentResult']\n"

    plans = sorted((install.source / "plans").glob("*.yaml"))
    validated = install.dagentic("validate", *plans)
    assert validated.returncode == 0, validated.stderr
    assert len(validated.stdout.splitlines()) == len(plans)

    ran = install.dagentic("run", install.source / "plans" / "hello.yaml", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["status"] == "succeeded"

    # The sample plans come with the package: the library has them outside any checkout,
    # and one runs (with the sub-plan beside it) from where pip put it.
    listed = install.dagentic("plans", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    library = {p["name"]: Path(p["path"]) for p in json.loads(listed.stdout)["plans"]}
    assert len(library) == 11 and "site-packages" in library["revenue_by_region"].parts
    ran = install.dagentic("run", library["quarter_over_quarter"], "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["outputs"]["leader_after"] == "West"


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_a_plain_install_has_one_top_level_package_and_no_extra(install: Install) -> None:
    shown = install.run(install.bin / "python", "-m", "pip", "show", "-f", "dagentic")
    assert shown.returncode == 0, shown.stderr
    files = shown.stdout.split("\nFiles:\n", 1)[1].split()
    tops = {f.split("/")[0] for f in files if not f.startswith("../")}
    assert {t for t in tops if not t.startswith("dagentic-")} == {"dagentic"}

    for folder in PACKAGE_FOLDERS:
        missing = install.python(f"import {folder}")
        assert missing.returncode == 1
        assert f"ModuleNotFoundError: No module named '{folder}'" in missing.stderr

    listed = install.run(install.bin / "python", "-m", "pip", "list", "--format", "json")
    installed = {_name(p["name"]) for p in json.loads(listed.stdout)}
    extras = set().union(*(v for k, v in declared().items() if k not in ("base", *NOT_FEATURES)))
    assert "numpy" in installed  # the memory store's, in the base
    assert sorted(installed & (extras | {"torch"})) == []


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_a_feature_of_a_missing_extra_names_the_extra(install: Install) -> None:
    otlp = install.dagentic(
        "run",
        install.source / "plans" / "hello.yaml",
        env={"DAGENTIC_TRACING__EXPORTER": "otlp"},
    )
    assert (otlp.returncode, otlp.stdout) == (2, "")
    assert otlp.stderr.endswith("install it with: pip install 'dagentic[otlp]'\n")

    chart = install.dagentic("report", "--png", install.cwd / "chart.png")
    assert (chart.returncode, chart.stderr) == (
        2,
        "error: --png needs matplotlib: pip install 'dagentic[charts]'\n",
    )

    local = install.dagentic("ask", "--no-memory", "Say hello")
    assert local.returncode == 1
    assert (
        "tool_error: model: the local provider needs llama-cpp-python: "
        "pip install 'dagentic[local]' (scripts/setup.sh does)"
    ) in local.stdout.splitlines()

    plan = install.cwd / "recall.yaml"
    plan.write_text(
        "version: 1\nname: recall\ngoal: recall\nsteps:\n"
        "  - {id: r, tool: memory.recall, args: {query: hello}}\n",
        encoding="utf-8",
    )
    memory = install.dagentic("run", plan)
    assert memory.returncode == 1
    assert (
        "tool_error: step 'r' failed: memory: long-term memory needs the 'memory' extra for "
        "its embeddings (all-MiniLM-L6-v2 on sentence-transformers): pip install "
        "'dagentic[memory]' (torch==2.13.0, a CPU build, first; scripts/setup.sh does both)"
    ) in memory.stdout.splitlines()


@pytest.mark.slow
@pytest.mark.timeout(INSTALL_TIMEOUT + 120)
def test_a_plain_install_lists_and_prunes_memory_without_the_memory_extra(
    install: Install,
) -> None:
    listed = install.dagentic("memory", "list", "--json")
    assert (listed.returncode, listed.stdout) == (0, "[]\n"), listed.stderr
    forgot = install.dagentic("memory", "forget", "--expired")
    assert (forgot.returncode, forgot.stdout) == (0, "forgot 0 items\n"), forgot.stderr
