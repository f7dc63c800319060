"""A plan may name its data (say, from an input) — but only inside sql.allowed_roots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dagentic import (
    Executor,
    FailureMode,
    PolicyBlockedError,
    RunResult,
    Settings,
    StepStatus,
    ToolRegistry,
    load_tools,
)
from dagentic.plugins.sql import engine_for


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def tools() -> ToolRegistry:
    return load_tools()


def _plan(table: str = "items") -> dict:
    return {
        "name": "from-input",
        "inputs": {"data": {"type": "string", "required": True}},
        "steps": [
            {
                "id": "count",
                "tool": "sql.query",
                "args": {
                    "sql": f"SELECT count(*) AS n FROM {table}",
                    "source": "${{ inputs.data }}",
                },
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


# -- every file read resolves inside the roots --------------------------------------------


def _refusal(file: Path, source: str, allowed: Path) -> str:
    return (
        f"sql: refused: {str(file)!r} in source {source!r} leads outside the folders plans "
        f"may read (sql.allowed_roots: {allowed}); only files inside them are read"
    )


async def _count(tools: ToolRegistry, allowed: Path, data: Path, table: str = "items") -> RunResult:
    plan = _plan(table)
    return await Executor(tools, settings=_settings(allowed)).run(plan, {"data": str(data)})


def _refused(result: RunResult) -> str:
    step = result.steps["count"]
    assert step.status is StepStatus.FAILED, step.output
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.POLICY_BLOCKED, step.error.message
    assert "token-7f3a" not in result.model_dump_json()
    return step.error.message


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["file", "chain", "chain-through-folder", "relative"])
async def test_a_symlinked_file_in_a_folder_source_leading_outside_is_refused(
    tools: ToolRegistry, folders: tuple[Path, Path], how: str
) -> None:
    allowed, outside = folders
    shop = allowed / "shop"
    (shop / "items.csv").unlink()
    link = shop / "items.csv"
    if how == "file":
        link.symlink_to(outside / "items.csv")
    elif how == "chain":  # shop/items.csv -> allowed/hop.csv -> outside/items.csv
        (allowed / "hop.csv").symlink_to(outside / "items.csv")
        link.symlink_to(allowed / "hop.csv")
    elif how == "chain-through-folder":  # via a folder link two levels down
        (allowed / "a" / "b").mkdir(parents=True)
        (allowed / "a" / "b" / "out").symlink_to(outside)
        link.symlink_to(allowed / "a" / "b" / "out" / "items.csv")
    else:
        link.symlink_to(Path("..") / ".." / "outside" / "items.csv")
    assert _refused(await _count(tools, allowed, shop)) == _refusal(link, "shop", allowed)


@pytest.mark.anyio
async def test_symlinks_that_stay_inside_the_roots_are_read(
    tools: ToolRegistry, folders: tuple[Path, Path]
) -> None:
    allowed, _ = folders
    real = allowed / "a" / "b"
    real.mkdir(parents=True)
    (allowed / "shop" / "items.csv").rename(real / "items.csv")
    (allowed / "hop.csv").symlink_to(real / "items.csv")
    (allowed / "shop" / "items.csv").symlink_to(allowed / "hop.csv")
    result = await _count(tools, allowed, allowed / "shop")
    assert result.succeeded, result.error
    assert result.outputs == {"n": 3}


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["in the folder", "as the source"])
async def test_a_path_that_looks_like_a_glob_is_one_file_not_a_pattern(
    tools: ToolRegistry, folders: tuple[Path, Path], where: str
) -> None:
    """DuckDB expands * ? [ ] in file names; a source names exactly one file each."""
    allowed, _ = folders
    odd = allowed / "odd"
    odd.mkdir()
    (odd / "*.csv").write_text("id\n1\n")
    (odd / "[i]tems.csv").write_text("id\n1\n2\n")
    (odd / "many.csv").write_text("id\n1\n2\n3\n4\n5\n")
    (odd / "items.csv").write_text("id\n1\n2\n3\n4\n5\n6\n7\n")
    if where == "as the source":
        result = await _count(tools, allowed, odd / "*.csv", table="_")  # named after "*"
        assert result.outputs == {"n": 1}
        missing = await _count(tools, allowed, odd / "?any.csv")
        assert missing.steps["count"].error is not None
        assert missing.steps["count"].error.message == (
            f"sql: source {str(odd / '?any.csv')!r} does not exist"
        )
    else:
        result = await _count(tools, allowed, odd)
        assert result.outputs == {"n": 7}  # the view of items.csv alone


@pytest.mark.anyio
async def test_a_glob_named_symlink_leading_outside_is_refused(
    tools: ToolRegistry, folders: tuple[Path, Path]
) -> None:
    allowed, outside = folders
    (allowed / "shop" / "*.csv").symlink_to(outside / "items.csv")
    result = await _count(tools, allowed, allowed / "shop")
    assert _refused(result) == _refusal(allowed / "shop" / "*.csv", "shop", allowed)


@pytest.mark.anyio
@pytest.mark.parametrize("swap", ["file", "folder"])
async def test_a_symlink_swapped_in_after_the_check_is_not_followed(
    folders: tuple[Path, Path], swap: str
) -> None:
    """The engine reads the very files it checked (held open): replacing one with a link,
    or its folder with a link, after the engine started does not redirect it (a plan naming
    the folder again is refused before that: it now resolves outside)."""
    allowed, outside = folders
    engine = await engine_for(_settings(allowed), str(allowed / "shop"))
    sql = "SELECT count(*) AS n, max(id) AS top FROM items"

    async def count() -> dict[str, Any]:
        return await engine.run(sql, None, max_rows=10, max_bytes=10_000, timeout=10)

    assert (await count())["rows"] == [{"n": 3, "top": 3}]
    if swap == "file":
        (allowed / "shop" / "items.csv").unlink()
        (allowed / "shop" / "items.csv").symlink_to(outside / "items.csv")
    else:
        (allowed / "shop").rename(allowed / "old-shop")
        (allowed / "shop").symlink_to(outside)
    # The file held open was deleted or moved: DuckDB no longer finds it among the
    # allowed paths and refuses; the link is never followed.
    with pytest.raises(PolicyBlockedError) as caught:
        await count()
    assert caught.value.message.startswith(
        "sql.query: refused by the engine: Permission Error: Cannot access file "
        f'"{allowed / "shop" / "items.csv"}" - file system operations are disabled'
    )
    assert "token-7f3a" not in caught.value.message
    engine.close()


def _hard_link_refusal(file: Path, source: str, allowed: Path, links: int = 2) -> str:
    return (
        f"sql: refused: {str(file)!r} in source {source!r} is a hard link (the file has "
        f"{links} names); a hard link may point outside the folders plans may read "
        f"(sql.allowed_roots: {allowed}) and no path shows it, so files with more than one "
        "name are not read; copy the file instead"
    )


@pytest.mark.anyio
@pytest.mark.parametrize("named", ["the folder", "the file"])
async def test_a_hard_link_to_a_file_outside_the_roots_is_refused(
    tools: ToolRegistry, folders: tuple[Path, Path], named: str
) -> None:
    """A hard link is the file it links to, and its path says nothing of where else that
    file is named: one inside the roots to a file outside would read the outside file."""
    allowed, outside = folders
    link = allowed / "shop" / "items.csv"
    link.unlink()
    os.link(outside / "items.csv", link)
    result = await _count(tools, allowed, link if named == "the file" else link.parent)
    source = "items" if named == "the file" else "shop"
    assert _refused(result) == _hard_link_refusal(link, source, allowed)


@pytest.mark.anyio
async def test_a_hard_link_between_files_inside_the_roots_is_refused_too(
    tools: ToolRegistry, folders: tuple[Path, Path]
) -> None:
    """Where the other names of a file are cannot be seen from one of them: any file with
    more than one name is refused in a plan-named source (documented)."""
    allowed, _ = folders
    (allowed / "kept").mkdir()
    os.link(allowed / "shop" / "items.csv", allowed / "kept" / "items.csv")
    os.link(allowed / "shop" / "items.csv", allowed / "kept" / "third.csv")
    result = await _count(tools, allowed, allowed / "shop")
    assert _refused(result) == _hard_link_refusal(
        allowed / "shop" / "items.csv", "shop", allowed, 3
    )
    (allowed / "kept" / "items.csv").unlink()
    (allowed / "kept" / "third.csv").unlink()  # one name again: read
    assert (await _count(tools, allowed, allowed / "shop")).outputs == {"n": 3}


@pytest.mark.anyio
async def test_a_hard_linked_duckdb_file_or_wal_is_refused(
    tools: ToolRegistry, folders: tuple[Path, Path]
) -> None:
    allowed, outside = folders
    with duckdb.connect(str(outside / "secret.duckdb")) as con:
        con.execute("CREATE TABLE items AS SELECT 'token-7f3a' AS id")
    os.link(outside / "secret.duckdb", allowed / "shop.duckdb")
    result = await _count(tools, allowed, allowed / "shop.duckdb")
    assert _refused(result) == _hard_link_refusal(allowed / "shop.duckdb", "shop", allowed)

    (allowed / "shop.duckdb").unlink()
    with duckdb.connect(str(allowed / "shop.duckdb")) as con:
        con.execute("CREATE TABLE items AS SELECT 1 AS id")
    (outside / "other.wal").write_bytes(b"token-7f3a")
    os.link(outside / "other.wal", allowed / "shop.duckdb.wal")
    result = await _count(tools, allowed, allowed / "shop.duckdb")
    assert _refused(result) == _hard_link_refusal(allowed / "shop.duckdb.wal", "shop", allowed)
    (allowed / "shop.duckdb.wal").unlink()
    assert (await _count(tools, allowed, allowed / "shop.duckdb")).outputs == {"n": 1}


@pytest.mark.anyio
async def test_a_configured_source_may_be_a_hard_link(
    tools: ToolRegistry, folders: tuple[Path, Path]
) -> None:
    """Sources in sql.sources are the operator's: they are read whatever they are."""
    allowed, outside = folders
    os.link(outside / "items.csv", allowed / "linked.csv")
    settings = Settings(sql={"sources": {"linked": {"path": str(allowed / "linked.csv")}}})  # type: ignore[arg-type]
    plan = {
        "name": "configured",
        "steps": [{"id": "n", "tool": "sql.query", "args": {"sql": "SELECT secret FROM linked"}}],
    }
    result = await Executor(tools, settings=settings).run(plan)
    assert result.succeeded, result.error
    assert result.steps["n"].output["rows"] == [{"secret": "token-7f3a"}]


@pytest.mark.anyio
async def test_a_fifo_in_a_folder_source_is_refused_without_blocking(
    tools: ToolRegistry, folders: tuple[Path, Path]
) -> None:
    allowed, _ = folders
    os.mkfifo(allowed / "shop" / "pipe.csv")
    result = await _count(tools, allowed, allowed / "shop")
    error = result.steps["count"].error
    assert error is not None
    assert error.failure_mode is FailureMode.TOOL_ERROR
    assert error.message == (
        f"sql: source 'shop': {allowed / 'shop' / 'pipe.csv'} is not a regular file"
    )


@pytest.mark.anyio
async def test_a_duckdb_source_whose_wal_leads_outside_is_refused(
    tools: ToolRegistry, folders: tuple[Path, Path]
) -> None:
    allowed, outside = folders
    with duckdb.connect(str(allowed / "shop.duckdb")) as con:
        con.execute("CREATE TABLE items AS SELECT 1 AS id")
    (outside / "other.wal").write_bytes(b"token-7f3a")
    (allowed / "shop.duckdb.wal").symlink_to(outside / "other.wal")
    result = await _count(tools, allowed, allowed / "shop.duckdb")
    assert _refused(result) == _refusal(allowed / "shop.duckdb.wal", "shop", allowed)
    (allowed / "shop.duckdb.wal").unlink()
    assert (await _count(tools, allowed, allowed / "shop.duckdb")).outputs == {"n": 1}


@pytest.mark.anyio
async def test_plans_naming_many_sources_keep_only_a_few_idle_engine_processes(
    folders: tuple[Path, Path],
) -> None:
    """Each set of sources has its own engine process; idle ones beyond MAX_IDLE_ENGINES
    are ended (least recently used first), so a plan cannot pile processes up."""
    from dagentic.plugins import sql

    allowed, _ = folders
    engines = []
    for n in range(sql.MAX_IDLE_ENGINES + 3):
        (allowed / f"shop{n}").mkdir()
        (allowed / f"shop{n}" / "items.csv").write_text(f"id\n{n}\n")
        engines.append(await engine_for(_settings(allowed), str(allowed / f"shop{n}")))
        running = [e for e in engines if e.pid is not None]
        assert len(running) == min(n + 1, sql.MAX_IDLE_ENGINES)
    assert engines[-1].pid is not None and engines[0].pid is None
    # An ended engine starts again when used, and answers.
    rows = await engines[0].run("SELECT id FROM items", None, max_rows=5, max_bytes=999, timeout=30)
    assert rows["rows"] == [{"id": 0}]
    engines[0].close()


def test_a_duckdb_file_swapped_after_its_check_is_refused(
    folders: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB attaches a file by its path: what it opened must be the very file checked
    (held open) before, not another one given the name in between."""
    from dagentic.plugins.sql import _worker

    allowed, _ = folders
    for name, value in [("shop", 1), ("other", 2)]:
        with duckdb.connect(str(allowed / f"{name}.duckdb")) as con:
            con.execute(f"CREATE TABLE items AS SELECT {value} AS id")
    real = _worker._open_files
    calls: list[int] = []

    def swapping() -> set[tuple[str, tuple[int, int, int]]]:
        if not calls:  # checked and held open; now another file takes its name
            os.replace(allowed / "other.duckdb", allowed / "shop.duckdb")
        calls.append(1)
        return real()

    monkeypatch.setattr(_worker, "_open_files", swapping)
    with pytest.raises(_worker.Failure) as caught:
        _worker.Database(
            {"shop": {"path": str(allowed / "shop.duckdb")}},
            roots=[str(allowed)],
            memory_limit="128MB",
            threads=1,
            temp_directory=str(tmp_path / "spill"),
        )
    assert caught.value.kind == "PolicyBlockedError"
    assert caught.value.message == (
        f"sql: refused: {str(allowed / 'shop.duckdb')!r} in source 'shop' changed while it "
        "was opened; try again"
    )
