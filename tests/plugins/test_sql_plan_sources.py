"""A plan may name its data (say, from an input) — but only inside sql.allowed_roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dagentic import Executor, FailureMode, Settings, StepStatus, ToolRegistry, load_tools


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def tools() -> ToolRegistry:
    return load_tools()


def _plan() -> dict:
    return {
        "name": "from-input",
        "inputs": {"data": {"type": "string", "required": True}},
        "steps": [
            {
                "id": "count",
                "tool": "sql.query",
                "args": {"sql": "SELECT count(*) AS n FROM items", "source": "${{ inputs.data }}"},
            }
        ],
        "outputs": {"n": "${{ steps.count.output.rows[0].n }}"},
    }


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    allowed = tmp_path / "allowed"
    (allowed / "shop").mkdir(parents=True)
    (allowed / "shop" / "items.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "items.csv").write_text("id,secret\n1,token-7f3a\n")
    return allowed, outside


def _settings(*roots: Path) -> Settings:
    return Settings(sql={"allowed_roots": [str(r) for r in roots]})  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_plan_input_can_name_a_folder_inside_an_allowed_root(
    tools: ToolRegistry, folders: tuple[Path, Path]
) -> None:
    allowed, _ = folders
    result = await Executor(tools, settings=_settings(allowed)).run(
        _plan(), {"data": str(allowed / "shop")}
    )
    assert result.succeeded, result.error
    assert result.outputs == {"n": 3}


@pytest.mark.anyio
async def test_a_single_file_source_is_one_table_named_after_the_file(
    tools: ToolRegistry, folders: tuple[Path, Path]
) -> None:
    allowed, _ = folders
    result = await Executor(tools, settings=_settings(allowed)).run(
        _plan(), {"data": str(allowed / "shop" / "items.csv")}
    )
    assert result.outputs == {"n": 3}


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["outside", "dotdot", "symlink", "no-roots"])
async def test_a_source_outside_the_allowed_roots_is_refused(
    tools: ToolRegistry, folders: tuple[Path, Path], how: str
) -> None:
    allowed, outside = folders
    roots = [] if how == "no-roots" else [allowed]
    target = {
        "outside": outside,
        "dotdot": allowed / ".." / "outside",
        "symlink": allowed / "link",
        "no-roots": allowed / "shop",
    }[how]
    if how == "symlink":
        os.symlink(outside, allowed / "link")
    result = await Executor(tools, settings=_settings(*roots)).run(_plan(), {"data": str(target)})
    step = result.steps["count"]
    assert step.status is StepStatus.FAILED
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.POLICY_BLOCKED
    shown = str(allowed) if roots else "none are set"
    assert step.error.message == (
        f"sql: refused: source {str(target)!r} is outside the folders plans may read "
        f"(sql.allowed_roots: {shown}); add its folder to that setting to allow it"
    )
    assert "token-7f3a" not in result.model_dump_json()


@pytest.mark.anyio
async def test_a_missing_source_is_a_tool_error(
    tools: ToolRegistry, folders: tuple[Path, Path]
) -> None:
    allowed, _ = folders
    missing = allowed / "nope"
    result = await Executor(tools, settings=_settings(allowed)).run(_plan(), {"data": str(missing)})
    error = result.steps["count"].error
    assert error is not None
    assert error.failure_mode is FailureMode.TOOL_ERROR
    assert error.message == f"sql: source {str(missing)!r} does not exist"
