"""MCP servers' tools as dagentic tools, against real servers: the fixture server written
with the SDK (tests/data/mcp_fixture_server.py) over stdio and streamable HTTP, and
mcp-server-time and mcp-server-git from PyPI over stdio."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagentic import (
    Executor,
    FailureMode,
    PlanError,
    Settings,
    StepStatus,
    ToolRegistry,
)
from dagentic.graph import load_plan
from dagentic.plugins.mcp import close_servers
from dagentic.plugins.mcp.client import mcp_tools

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests" / "data" / "mcp_fixture_server.py"
BIN = Path(sys.executable).parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp") / "fixture.log"


def _settings(**servers: Any) -> Settings:
    return Settings(mcp={"servers": servers})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def settings(log: Path) -> Settings:
    return _settings(
        fx={
            "command": sys.executable,
            "args": [str(FIXTURE), "stdio"],
            "env": {"FIXTURE_LOG": str(log)},
            "tools": {"echo": {"side_effects": "read", "trusted": True, "egress": {}}},
        },
        time={"command": str(BIN / "mcp-server-time")},
    )


@pytest.fixture(scope="module")
def tools(settings: Settings) -> ToolRegistry:
    return ToolRegistry(mcp_tools(settings))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_tools_are_listed_as_server_dot_tool(tools: ToolRegistry) -> None:
    names = tools.names()
    assert {"fx.add", "fx.echo", "fx.fail", "fx.slow", "fx.crash"} <= set(names)
    assert {"time.get_current_time", "time.convert_time"} <= set(names)
    assert tools.get("fx.add").args_schema()["required"] == ["a", "b"]


def test_annotations_map_onto_side_effects_trust_and_egress(tools: ToolRegistry) -> None:
    add = tools.get("fx.add")  # readOnly, idempotent, closed world
    assert (add.side_effects, add.idempotent, add.trusted, dict(add.egress)) == (
        "read",
        True,
        True,
        {},
    )
    fail = tools.get("fx.fail")  # no annotations: an untrusted write
    assert (fail.side_effects, fail.idempotent, fail.trusted) == ("write", False, False)
    assert dict(fail.egress) == {"message": "content"}
    echo = tools.get("fx.echo")  # no annotations, but the settings say otherwise
    assert (echo.side_effects, echo.trusted, dict(echo.egress)) == ("read", True, {})
    assert tools.get("time.get_current_time").side_effects == "read"


def test_a_wrong_argument_in_a_plan_file_is_a_problem_at_its_line(
    tools: ToolRegistry, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        textwrap.dedent("""\
        name: wrong
        steps:
          - id: add
            tool: fx.add
            args:
              a: one
              c: 2
          - id: now
            tool: time.get_current_time
            args: {}
        """)
    )
    with pytest.raises(PlanError) as caught:
        load_plan(plan, tools)
    problems = [str(p) for p in caught.value.problems]
    assert any(p.startswith(f"{plan}:6:") and "argument 'a'" in p for p in problems), problems
    assert any(p.startswith(f"{plan}:7:") and "no argument 'c'" in p for p in problems), problems
    assert any("needs argument 'b'" in p for p in problems), problems
    assert any("needs argument 'timezone'" in p for p in problems), problems


@pytest.mark.anyio
async def test_a_plan_calls_tools_with_structured_and_text_output(
    tools: ToolRegistry, settings: Settings
) -> None:
    result = await Executor(tools, settings=settings).run("""
name: calls
steps:
  - {id: add, tool: fx.add, args: {a: 2, b: 3}}
  - {id: echo, tool: fx.echo, args: {text: "hi", times: 2}}
  - {id: now, tool: time.get_current_time, args: {timezone: "UTC"}}
  - {id: picture, tool: fx.picture}
outputs:
  sum: ${{ steps.add.output.sum }}
  echo: ${{ steps.echo.output }}
  tz: ${{ steps.now.output.timezone }}
""")
    assert result.succeeded, result.error
    assert result.outputs == {"sum": 5, "echo": "hi hi", "tz": "UTC"}
    text, image = result.steps["picture"].output
    assert text == {"type": "text", "text": "a dot"}
    assert (image["type"], image["mime_type"]) == ("image", "image/png")
    # what a server returns is untrusted unless its annotations say otherwise
    assert result.steps["picture"].provenance.trusted is False
    assert result.steps["add"].provenance.trusted is True


@pytest.mark.anyio
async def test_a_servers_progress_notifications_reach_the_journal_and_the_live_table(
    tools: ToolRegistry, settings: Settings
) -> None:
    from dagentic import MemoryJournal
    from dagentic.graph import compile_plan
    from dagentic.progress import LiveProgress
    from rich.console import Console

    plan = compile_plan(
        {"name": "p", "steps": [{"id": "s", "tool": "fx.steps", "args": {"count": 3}}]}, tools
    )
    journal = MemoryJournal()
    live = LiveProgress(plan, Console(file=io.StringIO()))
    shown = []

    class Both:
        def record(self, event: Any) -> None:
            journal.record(event)
            live.record(event)
            if event.kind == "progress":
                shown.append(str(live.rows["s"]["note"]))

    result = await Executor(tools, settings=settings, journal=Both(), tracing=None).run(plan)

    assert result.succeeded, result.error
    progress = [e.detail for e in journal.events if e.kind == "progress"]
    assert progress == [{"done": float(n), "total": 3.0, "message": f"step {n}"} for n in (1, 2, 3)]
    assert shown == ["33% step 1", "67% step 2", "100% step 3"]


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_calls_from_a_trio_loop_share_the_session_and_time_out(
    tools: ToolRegistry, log: Path
) -> None:
    cancelled = log.read_text().count("slow cancelled") if log.exists() else 0
    result = await Executor(tools, settings=Settings()).run("""
name: parallel
steps:
  - {id: one, tool: fx.add, args: {a: 1, b: 1}}
  - {id: two, tool: fx.add, args: {a: 2, b: 2}}
  - {id: slow, tool: fx.slow, args: {seconds: 30}, timeout: 1s}
outputs:
  pids: ["${{ steps.one.output.pid }}", "${{ steps.two.output.pid }}"]
""")
    first, second = (result.steps[s].output["pid"] for s in ("one", "two"))
    assert first == second  # one session, one server process
    slow = result.steps["slow"].error
    assert slow is not None and slow.failure_mode is FailureMode.TIMEOUT
    deadline = time.monotonic() + 10
    while (log.read_text() if log.exists() else "").count("slow cancelled") <= cancelled:
        assert time.monotonic() < deadline, "the server never saw the cancellation"
        time.sleep(0.05)


@pytest.mark.anyio
async def test_a_server_error_is_a_tool_error(tools: ToolRegistry, settings: Settings) -> None:
    result = await Executor(tools, settings=settings).run("""
name: fails
steps:
  - {id: fail, tool: fx.fail, args: {message: "no luck"}}
""")
    step = result.steps["fail"]
    assert step.status is StepStatus.FAILED
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.TOOL_ERROR
    assert "fixture failure: no luck" in step.error.message


@pytest.mark.anyio
async def test_a_step_timeout_cancels_the_request_on_the_server(
    tools: ToolRegistry, settings: Settings, log: Path
) -> None:
    started = time.perf_counter()
    result = await Executor(tools, settings=settings).run("""
name: slow
steps:
  - {id: slow, tool: fx.slow, args: {seconds: 30}, timeout: 1s}
""")
    assert time.perf_counter() - started < 10
    step = result.steps["slow"]
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.TIMEOUT
    deadline = time.monotonic() + 10
    while "slow cancelled" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the server never saw the cancellation"
        time.sleep(0.05)


@pytest.mark.anyio
async def test_a_crash_is_a_tool_error_with_stderr_and_the_next_call_restarts(
    tools: ToolRegistry, settings: Settings
) -> None:
    executor = Executor(tools, settings=settings)
    before = await executor.run("""
name: pid
steps: [{id: add, tool: fx.add, args: {a: 0, b: 0}}]
outputs: {pid: "${{ steps.add.output.pid }}"}
""")
    assert before.succeeded, before.error
    crashed = await executor.run("""
name: crash
steps: [{id: crash, tool: fx.crash}]
""")
    step = crashed.steps["crash"]
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.TOOL_ERROR
    assert "fixture: crashing now, as asked" in step.error.message
    after = await executor.run("""
name: pid
steps: [{id: add, tool: fx.add, args: {a: 0, b: 0}}]
outputs: {pid: "${{ steps.add.output.pid }}"}
""")
    assert after.succeeded, after.error
    assert after.outputs["pid"] != before.outputs["pid"]
    assert not _alive(before.outputs["pid"])


@pytest.mark.anyio
async def test_a_tool_list_change_is_seen_on_the_next_listing(log: Path) -> None:
    settings = _settings(
        grow={"command": sys.executable, "args": [str(FIXTURE), "stdio"]},
    )
    assert "grow.extra" not in {t.name for t in mcp_tools(settings)}
    result = await Executor(ToolRegistry(mcp_tools(settings)), settings=settings).run("""
name: grow
steps: [{id: grow, tool: grow.grow}]
""")
    assert result.succeeded, result.error
    deadline = time.monotonic() + 10
    while "grow.extra" not in {t.name for t in mcp_tools(settings)}:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_server(log: Path) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(FIXTURE), "http", str(port)],
        env={**os.environ, "FIXTURE_LOG": str(log)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, "the fixture server exited"
                assert time.monotonic() < deadline, "the fixture server did not listen"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        close_servers()
        process.terminate()
        process.wait(10)


@pytest.mark.anyio
async def test_streamable_http_server(http_server: str) -> None:
    settings = _settings(web={"url": http_server, "headers": {"X-Test": "yes"}})
    tools = ToolRegistry(mcp_tools(settings))
    assert "web.add" in tools
    result = await Executor(tools, settings=settings).run("""
name: http
steps:
  - {id: add, tool: web.add, args: {a: 20, b: 22, label: answer}}
  - {id: fail, tool: web.fail, args: {message: "over http"}}
  - {id: slow, tool: web.slow, args: {seconds: 30}, timeout: 1s}
outputs: {answer: "${{ steps.add.output.answer }}"}
""")
    assert result.steps["add"].status is StepStatus.SUCCEEDED
    assert result.steps["add"].output["answer"] == 42
    fail, slow = result.steps["fail"].error, result.steps["slow"].error
    assert fail is not None and fail.failure_mode is FailureMode.TOOL_ERROR
    assert "over http" in fail.message
    assert slow is not None and slow.failure_mode is FailureMode.TIMEOUT


@pytest.mark.anyio
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
async def test_mcp_server_git(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "hello.txt").write_text("hello\n")
    settings = _settings(
        git={"command": str(BIN / "mcp-server-git"), "args": ["--repository", str(repo)]}
    )
    tools = ToolRegistry(mcp_tools(settings))
    assert "git.git_status" in tools
    result = await Executor(tools, settings=settings).run(f"""
name: status
steps:
  - {{id: status, tool: git.git_status, args: {{repo_path: "{repo}"}}}}
outputs: {{status: "${{{{ steps.status.output }}}}"}}
""")
    assert result.succeeded, result.error
    assert "hello.txt" in str(result.outputs["status"])


def test_no_server_process_is_left_behind(settings: Settings) -> None:
    code = textwrap.dedent(f"""
        import sys
        from dagentic import Settings
        from dagentic.plugins.mcp.client import _portal, connection, mcp_tools
        from dagentic.plugins.mcp.settings import McpSettings
        settings = Settings(mcp={{"servers": {{"fx": {{"command": sys.executable,
            "args": [{str(FIXTURE)!r}, "stdio"]}}}}}})
        mcp_tools(settings)
        conn = connection("fx", settings.plugin(McpSettings).servers["fx"])
        print(_portal().call(conn.call, "add", {{"a": 1, "b": 1}})["pid"])
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[-1])
    deadline = time.monotonic() + 5
    while _alive(pid):  # stopped at exit, without close_servers()
        assert time.monotonic() < deadline, f"server process {pid} outlived its parent"
        time.sleep(0.05)


def test_close_servers_stops_them(settings: Settings) -> None:
    from dagentic.plugins.mcp.client import _portal, connection
    from dagentic.plugins.mcp.settings import McpSettings

    conn = connection("fx", settings.plugin(McpSettings).servers["fx"])
    pid = _portal().call(conn.call, "add", {"a": 1, "b": 1})["pid"]
    assert _alive(pid)
    close_servers()
    assert not _alive(pid)


def test_a_server_that_fails_to_start_is_named_with_its_stderr() -> None:
    from dagentic import ToolError

    settings = _settings(
        broken={
            "command": sys.executable,
            "args": [
                "-c",
                "import sys; sys.stderr.write('broken: no config file\\n'); sys.exit(1)",
            ],
            "startup_timeout": 10,
        }
    )
    with pytest.raises(ToolError) as caught:
        mcp_tools(settings)
    message = caught.value.message
    assert "MCP server 'broken'" in message
    assert "broken: no config file" in message


def test_servers_configured_without_the_sdk_name_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagentic import PluginError

    monkeypatch.setitem(sys.modules, "mcp", None)  # import mcp fails, as in a plain install
    settings = _settings(fx={"command": sys.executable})
    with pytest.raises(PluginError, match=r"pip install 'dagentic\[mcp\]'"):
        mcp_tools(settings)


def test_a_server_needs_one_transport_and_a_plain_name() -> None:
    from dagentic import SettingsError
    from dagentic.plugins.mcp import McpSettings

    with pytest.raises(SettingsError, match="either command"):
        _settings(both={"command": "x", "url": "http://127.0.0.1:1/mcp"}).plugin(McpSettings)
    with pytest.raises(SettingsError, match="lowercase"):
        _settings(**{"Bad-Name": {"command": "x"}}).plugin(McpSettings)
    secret = _settings(h={"url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "t0k"}})
    assert "t0k" not in repr(secret.plugin(McpSettings))


def test_the_command_group_reads_from_source() -> None:
    from dagentic.plugins.mcp import mcp_app, register_commands

    assert register_commands() == [mcp_app]
    assert {c.name for c in mcp_app.registered_commands} == {"serve", "tools"}


def test_dagentic_mcp_tools_and_dagentic_tools_list_a_configured_server(tmp_path: Path) -> None:
    import json

    (tmp_path / "dagentic.toml").write_text(
        f"[mcp.servers.fx]\ncommand = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(str(FIXTURE))}, 'stdio']\n"
    )
    dagentic = str(BIN / "dagentic")
    listed = subprocess.run(
        [dagentic, "mcp", "tools", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    add = next(t for t in json.loads(listed.stdout)["fx"] if t["name"] == "fx.add")
    assert add["annotations"]["readOnlyHint"] is True
    tools = subprocess.run(
        [dagentic, "tools", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert tools.returncode == 0, tools.stderr
    assert "fx.add" in tools.stdout


def test_changed_settings_replace_the_session_and_stop_the_old_server() -> None:
    from dagentic.plugins.mcp.client import _portal, connection
    from dagentic.plugins.mcp.settings import McpServer

    first = McpServer(command=sys.executable, args=[str(FIXTURE), "stdio"])
    old = connection("swap", first)
    old_pid = _portal().call(old.call, "add", {"a": 1, "b": 1})["pid"]
    assert connection("swap", first) is old  # the same settings: the same session
    second = McpServer(
        command=sys.executable, args=[str(FIXTURE), "stdio"], env={"FIXTURE_LOG": os.devnull}
    )
    new = connection("swap", second)
    assert new is not old
    new_pid = _portal().call(new.call, "add", {"a": 1, "b": 1})["pid"]
    assert new_pid != old_pid
    deadline = time.monotonic() + 10
    while _alive(old_pid):
        assert time.monotonic() < deadline, "the replaced server still runs"
        time.sleep(0.05)


def test_a_server_that_never_answers_times_out_and_is_stopped() -> None:
    from dagentic import ToolError

    settings = _settings(
        mute={
            "command": sys.executable,
            "args": [
                "-c",
                "import os, sys, time; print('pid', os.getpid(), file=sys.stderr, flush=True); "
                "time.sleep(60)",
            ],
            "startup_timeout": 1,
        }
    )
    started = time.monotonic()
    with pytest.raises(ToolError) as caught:
        mcp_tools(settings)
    assert time.monotonic() - started < 15
    message = caught.value.message
    assert "MCP server 'mute' did not start within 1s" in message
    pid = int(message.split("pid ")[-1].split()[0])
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, "the server that never answered still runs"
        time.sleep(0.05)
