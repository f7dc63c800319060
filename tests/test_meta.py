"""Meta-tests: the repository's own plans and examples keep working.

(The freshness of ``plans/plan.schema.json`` is checked in tests/runtime/test_plan.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagentic import PlanError, ToolRegistry, load_plan, load_tools

from tests.blind import RUNS_DIR
from tests.cli import run_script
from tests.sample_plans import FOLDERS as SAMPLE_FOLDERS

ROOT = Path(__file__).resolve().parents[1]
PLANS = sorted(
    (path for folder in (ROOT / "plans", *SAMPLE_FOLDERS) for path in folder.glob("*.yaml")),
    key=lambda path: path.name,
)
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("sandbox_"))
SNIPPETS = sorted((ROOT / "examples").glob("sandbox_*.py"))  # for `dagentic sandbox run`


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


@pytest.fixture(scope="module")
def installed_tools() -> ToolRegistry:
    """The tools a user gets: every installed plugin, nothing from the tests."""
    return load_tools()


def test_repository_has_plans_and_examples() -> None:
    # Without this, the parametrized tests below could silently collect nothing.
    assert len(PLANS) >= 15, "no plans/*.yaml or sample plans found"
    assert EXAMPLES, "no examples/*.py found"
    assert SNIPPETS, "no examples/sandbox_*.py found"


@pytest.mark.parametrize("path", PLANS, ids=_ids(PLANS))
def test_plan_validates_with_the_installed_tools(path: Path, installed_tools: ToolRegistry) -> None:
    try:
        compiled = load_plan(path, installed_tools)
    except PlanError as exc:
        pytest.fail(f"{path.relative_to(ROOT)} does not validate:\n{exc}")
    assert compiled.steps


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=_ids(EXAMPLES))
def test_example_runs(path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGENTIC_")}
    env["DAGENTIC_RUNS_DIR"] = RUNS_DIR  # defaults otherwise, but no traces in the checkout
    done = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (
        f"{path.relative_to(ROOT)} exited {done.returncode}\n"
        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["docker", "process"])
@pytest.mark.parametrize("path", SNIPPETS, ids=_ids(SNIPPETS))
def test_sandbox_snippet_runs_in_each_backend(path: Path, backend: str) -> None:
    done = run_script("sandbox", "run", "--backend", backend, path, cwd=ROOT, timeout=120)
    assert done.returncode == 0, (
        f"{path.relative_to(ROOT)} exited {done.returncode} on {backend}\n"
        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    assert f"backend={backend}" in done.stderr
