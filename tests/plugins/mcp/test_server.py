"""``dagentic mcp serve``: plans as MCP tools, driven by the MCP SDK's own client, in process,
over stdio (``dagentic mcp serve`` spawned by the client) and over streamable HTTP."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

import httpx2
import mcp.types as types
import typer
from dagentic.plugins.mcp.server import (
    build_server,
    input_schema,
    is_loopback,
    parse_http,
    serve,
    tool_name,
)
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.blind import blind_settings

ROOT = Path(__file__).resolve().parents[3]
PLANS = ROOT / "plans"
BIN = Path(sys.executable).parent
BROKEN = """\
version: 1
name: broken
steps:
  - id: a
    tool: nope.nothing
  - id: b
    tool: notify.log
    args: {message: "${{ steps.missing.output }}"}
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server() -> Any:
    return build_server([PLANS], blind_settings(journal={"enabled": False}))


def _env(tmp: Path) -> dict[str, str]:
    """A server process's environment: blind to the DAGENTIC_* variables around the tests,
    its run files in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGENTIC_")}
    env["DAGENTIC_RUNS_DIR"] = str(tmp / "runs")
    return env


async def _approve(context: Any, params: Any) -> types.ElicitResult:
    assert "notify.log" in params.message
    return types.ElicitResult(action="accept", content={"approve": True})


async def _decline(context: Any, params: Any) -> types.ElicitResult:
    return types.ElicitResult(action="decline")


# --------------------------------------------------------------------------- in process


def test_tool_names_are_mcp_names_and_never_clash() -> None:
    taken = {"validate_plan", "ask"}
    assert tool_name("hello", taken) == "hello"
    assert tool_name("quarterly revenue/Q3 ✓", taken) == "quarterly_revenue_Q3"
    assert tool_name("validate_plan", taken) == "validate_plan_2"
    assert tool_name("💥", taken) == "plan"
    assert len(tool_name("x" * 500, taken)) == 128


def test_http_addresses() -> None:
    assert parse_http("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert parse_http("[::1]:80") == ("::1", 80)
    assert parse_http("8765") == parse_http(":8765") == ("127.0.0.1", 8765)
    for bad in ("127.0.0.1:", "host:99999", ":", "", "[::1]:x", "0"):
        with pytest.raises(typer.BadParameter):
            parse_http(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_non_loopback_without_token_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGENTIC_MCP_TOKEN", raising=False)
    with pytest.raises(typer.BadParameter, match="needs --token"):
        serve(plans=[PLANS], http="0.0.0.0:1")
    with pytest.raises(typer.BadParameter, match="empty"):
        serve(plans=[PLANS], http="127.0.0.1:1", token=" ")


@pytest.mark.anyio
async def test_plans_are_tools_with_their_inputs(server: Any) -> None:
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"hello", "revenue", "publish", "validate_plan"} <= set(tools)
    assert "ask" not in tools  # no model
    hello = tools["hello"]
    assert hello.input_schema["properties"] == {
        "names": {
            "type": "array",
            "description": "Who to greet",
            "default": ["Ada", "Grace", "Linus"],
        },
        "shout": {"type": "boolean", "default": False},
    }
    assert hello.input_schema["additionalProperties"] is False
    assert "Greet a list of people" in (hello.description or "")
    assert hello.output_schema is not None
    assert set(hello.output_schema["properties"]["outputs"]["properties"]) == {
        "greetings",
        "summary",
    }
    revenue = tools["revenue"].input_schema["properties"]
    assert revenue["quarter"]["type"] == "string" and revenue["quarter"]["default"] == "2026Q3"
    assert revenue["limit"]["type"] == "integer"


def test_required_inputs_are_required(tools: Any) -> None:
    from dagentic import compile_plan

    plan = compile_plan(
        {
            "name": "p",
            "inputs": {"who": {"type": "string", "required": True}, "n": {"type": "number"}},
            "steps": [{"id": "a", "tool": "test.echo", "args": {"value": "${{ inputs.who }}"}}],
        },
        tools,
    )
    schema = input_schema(plan)
    assert schema["required"] == ["who"]
    assert schema["properties"]["n"] == {"type": "number"}


@pytest.mark.anyio
async def test_calling_a_plan_runs_it_and_answers_its_outputs(server: Any) -> None:
    async with Client(server) as client:
        result = await client.call_tool("hello", {"names": ["Ann", "Bob"], "shout": True})
        assert not result.is_error
        data = result.structured_content
        assert data is not None and data["status"] == "succeeded" and data["run_id"]
        assert [g["message"] for g in data["outputs"]["greetings"]] == [
            "Hello, ANN!",
            "Hello, BOB!",
        ]
        assert data["outputs"]["summary"] == "greeted 2 people"
        assert data["failures"] == [] and data["error"] is None

        bad = await client.call_tool("hello", {"names": 3, "nobody": 1})
        assert bad.is_error
        text = bad.content[0].text  # type: ignore[union-attr]
        assert "input 'names' must be array" in text and "unknown input 'nobody'" in text


@pytest.mark.anyio
async def test_what_a_call_answers_is_escaped(server: Any) -> None:
    hostile = "\x1b]0;owned\x07\x1b[2J\u202eevil"
    async with Client(server) as client:
        result = await client.call_tool("hello", {"names": [hostile]})
        refused = await client.call_tool("hello", {"names": "\x1b[2J"})
    assert result.structured_content is not None  # the data itself, exact
    assert result.structured_content["outputs"]["greetings"][0]["message"] == f"Hello, {hostile}!"
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.isascii() and "\x1b" not in text and "\x07" not in text
    message = refused.content[0].text  # type: ignore[union-attr]
    assert refused.is_error and "\x1b" not in message


@pytest.mark.anyio
async def test_validate_plan_reports_problems_with_line_and_column(server: Any) -> None:
    async with Client(server) as client:
        result = await client.call_tool("validate_plan", {"plan": BROKEN})
        report = result.structured_content
        assert report is not None and report["valid"] is False
        where = {(p["line"], p["column"]) for p in report["problems"]}
        assert (5, 11) in where
        assert any("nope.nothing" in p["message"] for p in report["problems"])
        assert all(p["line"] for p in report["problems"])

        syntax = await client.call_tool("validate_plan", {"plan": "name: [unclosed\n"})
        assert syntax.structured_content is not None
        (problem,) = syntax.structured_content["problems"]
        assert problem["line"] and problem["column"] and "YAML" in problem["message"]

        good = await client.call_tool("validate_plan", {"plan": (PLANS / "hello.yaml").read_text()})
        assert good.structured_content == {
            "valid": True,
            "plan": "hello",
            "steps": 4,
            "problems": [],
        }

        huge = await client.call_tool("validate_plan", {"plan": "#" * (2 << 20)})
        assert huge.is_error  # past the plan bound: refused before it is read


@pytest.mark.anyio
async def test_approval_without_elicitation_is_refused(server: Any) -> None:
    async with Client(server) as client:
        result = await client.call_tool("publish", {})
    data = result.structured_content
    assert result.is_error and data is not None and data["status"] == "failed"
    (failure,) = data["failures"]
    assert failure["step"] == "post" and failure["failure_mode"] == "policy_blocked"
    assert "cannot be asked" in failure["message"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_approval_is_asked_through_elicitation(mode: str, tmp_path: Path) -> None:
    # 2026-07-28 (auto): the run waits in the durable journal, the call answers with the
    # question (InputRequiredResult), and the client's retry resumes the run with its
    # decision. Handshake era (legacy): the question is asked mid-call.
    server = build_server([PLANS / "publish.yaml"], blind_settings(runs_dir=tmp_path))
    async with Client(server, mode=mode, elicitation_callback=_approve) as client:
        approved = await client.call_tool("publish", {"quarter": "2026Q2"})
    assert not approved.is_error and approved.structured_content is not None
    assert approved.structured_content["status"] == "succeeded"
    assert approved.structured_content["outputs"]["posted"].startswith("West led 2026Q2")

    async with Client(server, mode=mode, elicitation_callback=_decline) as client:
        declined = await client.call_tool("publish", {})
    assert declined.is_error and declined.structured_content is not None
    (failure,) = declined.structured_content["failures"]
    assert failure["step"] == "post" and failure["failure_mode"] == "policy_blocked"
    assert "denied" in failure["message"]


@pytest.mark.anyio
async def test_a_question_cannot_wait_without_a_journal() -> None:
    server = build_server([PLANS / "publish.yaml"], blind_settings(journal={"enabled": False}))
    async with Client(server, elicitation_callback=_approve) as client:  # 2026-07-28
        refused = await client.call_tool("publish", {})
    assert refused.is_error and refused.structured_content is not None
    (failure,) = refused.structured_content["failures"]
    assert failure["failure_mode"] == "policy_blocked" and "durable journal" in failure["message"]


# --------------------------------------------------------------------------- processes


def _processes_in(folder: Path) -> list[str]:
    """The processes working in ``folder`` (a server and what it started), by /proc."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(proc / "cwd")) == folder.resolve():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def _none_left(folder: Path) -> None:
    """No process started in ``folder`` outlives its test (a few seconds to exit)."""
    if not Path("/proc/self/cwd").exists():
        return
    deadline = time.monotonic() + 10
    while _processes_in(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_in(folder) == []


# `dagentic mcp serve`'s body, for an installation whose mcp plugin has no command group.
_SERVE = (
    "import sys; from pathlib import Path; from dagentic.plugins.mcp.server import serve; "
    "a = sys.argv[1:]; "
    "serve(plans=[Path(a[a.index('--plans') + 1])], "
    "http=a[a.index('--http') + 1] if '--http' in a else None)"
)


def _serve(*args: str) -> list[str]:
    """The command that serves: ``dagentic mcp serve ARGS``."""
    import dagentic.plugins.mcp as plugin

    found = shutil.which("dagentic", path=str(BIN))
    assert found, "the dagentic command is not installed next to this Python"
    if not hasattr(plugin, "mcp_app"):  # the command group is not there (yet)
        return [sys.executable, "-c", _SERVE, *args]
    return [found, "mcp", "serve", *args]


@pytest.mark.anyio
async def test_stdio_dagentic_mcp_serve(tmp_path: Path) -> None:
    command, *args = _serve("--plans", str(PLANS))
    params = StdioServerParameters(
        command=command,
        args=args,
        env=_env(tmp_path),
        cwd=tmp_path,
    )
    async with Client(params, elicitation_callback=_approve) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "revenue" in tools and "hello" in tools
        assert tools["revenue"].input_schema["properties"]["limit"]["default"] == 3
        result = await client.call_tool("revenue", {"quarter": "2026Q3", "limit": 2})
        assert not result.is_error, result.content
        outputs = result.structured_content["outputs"]  # type: ignore[index]
        assert outputs["top_region"] == "West"
        assert 0 < outputs["share"] <= 1
        assert len(outputs["top_categories"]) == 2
        assert outputs["news"]
        published = await client.call_tool("publish", {})  # approved by the client
        assert not published.is_error, published.content
    # The runs went to the durable journal of the server's settings.
    assert (tmp_path / "runs" / "journal.sqlite").exists()
    _none_left(tmp_path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``dagentic mcp serve --http 127.0.0.1:PORT`` with its token in DAGENTIC_MCP_TOKEN (out
    of the process list): its URL and token."""
    port, token = _free_port(), "s3cret-token"
    process = subprocess.Popen(
        _serve("--plans", str(PLANS), "--http", f"127.0.0.1:{port}"),
        env={**_env(tmp_path), "DAGENTIC_MCP_TOKEN": token},
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start in 30 s"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp", token
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()  # type: ignore[union-attr]
    _none_left(tmp_path)


@pytest.mark.anyio
async def test_streamable_http_with_a_token(http_server: tuple[str, str]) -> None:
    url, token = http_server
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"hello", "revenue", "validate_plan"} <= names
        result = await client.call_tool("hello", {"names": ["Ada"]})
        assert not result.is_error
        assert result.structured_content is not None
        assert result.structured_content["outputs"]["summary"] == "greeted 1 people"
        refused = await client.call_tool("publish", {})  # no elicitation: refused
        assert refused.is_error
        assert refused.structured_content is not None
        assert refused.structured_content["failures"][0]["failure_mode"] == "policy_blocked"

    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient() as http:
        for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            response = await http.post(url, json=body, headers={**accept, **auth})
            assert response.status_code == 401, auth
            assert "s3cret" not in response.text
    with pytest.raises(Exception):  # noqa: B017 - the SDK's error for a 401
        async with Client(url) as client:
            await client.list_tools()


@pytest.mark.anyio
async def test_ask_is_offered_with_a_model(tools: Any, tmp_path: Path) -> None:
    from dagentic.models.scripted import ScriptedModel

    plan = {
        "steps": [{"id": "total", "tool": "test.echo", "args": {"value": 42}}],
        "outputs": {"total": "${{ steps.total.output }}"},
    }
    replies = [
        plan,
        {"answer": "The total is 42 [total].", "cited_steps": ["total"], "complete": True},
        {"passed": True, "reason": "the answer achieves the goal"},
    ]
    server = build_server(
        [PLANS / "hello.yaml"],
        blind_settings(runs_dir=tmp_path, memory={"enabled": False}),
        tools=tools,
        model=ScriptedModel(replies),
    )
    async with Client(server) as client:
        assert "ask" in {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("ask", {"goal": "What is the total?"})
    assert not result.is_error, result.content
    data = result.structured_content
    assert data is not None and data["status"] == "succeeded"
    assert data["answer"] == "The total is 42 [total]." and data["outputs"] == {"total": 42}
