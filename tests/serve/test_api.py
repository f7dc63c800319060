"""The HTTP API of ``dagentic serve``, through httpx against the app (its lifespan run as
uvicorn runs it), with a journal, runs folder and plan folder of each test's own; one test
runs the real command on 127.0.0.1.

What is checked: the token (missing, wrong, in the query of the event stream only), body
limits, plan validation with lines and columns, what a plan body may reach (tools, sql
sources and path tricks), plan names that try to leave the plan folders, runs started,
read and listed with filters, their events as SSE (order, resume from Last-Event-ID),
cancelling, approvals that make the run go on, traces, the report, the OpenAPI schema,
asks answered by a scripted model, and runs that outlive a stop of the server.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from dagentic import ScriptedModel, Settings, ToolRegistry, load_tools
from dagentic.durable import close_journals, open_journal
from dagentic.errors import PlanError
from dagentic.graph import load_plan
from dagentic.serve import create_app
from dagentic.serve.security import MISSING_TOKEN, MISSING_TOKEN_EVENTS, WRONG_TOKEN

from tests.blind import blind_settings
from tests.cli import DAGENTIC, invoke, isolate, script_env
from tests.tools import TEST_TOOLS

pytestmark = pytest.mark.anyio

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

CHAIN = """\
version: 1
name: chain
inputs:
  seconds: {type: number, default: 0}
steps:
  - id: a
    tool: test.sleep
    args: {seconds: "${{ inputs.seconds }}", value: 1}
  - id: b
    tool: test.echo
    args: {value: "${{ steps.a.output + 1 }}"}
  - id: c
    tool: test.sleep
    args: {seconds: "${{ inputs.seconds }}", value: "${{ steps.b.output }}"}
outputs:
  last: ${{ steps.c.output }}
"""

ASKS = """\
version: 1
name: asks
steps:
  - id: prepare
    tool: test.echo
    args: {value: hello}
  - id: send
    tool: test.write
    approval: required
    args: {text: "${{ steps.prepare.output }} world"}
outputs:
  sent: ${{ steps.send.output.written }}
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn's loop


@pytest.fixture
def tools() -> ToolRegistry:
    return ToolRegistry([*load_tools(), *TEST_TOOLS])


@pytest.fixture
def plans(tmp_path: Path) -> Path:
    folder = tmp_path / "plans"
    folder.mkdir()
    (folder / "chain.yaml").write_text(CHAIN, encoding="utf-8")
    (folder / "asks.yaml").write_text(ASKS, encoding="utf-8")
    return folder


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    serve = values.pop("serve", {})
    values.setdefault("library", {"folders": [str(tmp_path / "plans")]})
    values.setdefault("journal", {"lease": 3})
    values.setdefault("memory", {"enabled": False})
    return blind_settings(runs_dir=str(tmp_path / "runs"), serve=serve, **values)


@pytest.fixture(autouse=True)
def _journals_closed() -> Any:
    yield
    close_journals()


@asynccontextmanager
async def serving(
    app: Any, headers: dict[str, str] | None = AUTH
) -> AsyncIterator[httpx.AsyncClient]:
    """The app started as uvicorn starts it (its lifespan), and a client of it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers or {}
        ) as client:
            yield client


@pytest.fixture
async def client(
    tmp_path: Path, plans: Path, tools: ToolRegistry
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(tmp_path), tools=tools, token=TOKEN)
    async with serving(app) as c:
        yield c


async def ended(client: httpx.AsyncClient, run_id: str, timeout: float = 20) -> dict[str, Any]:
    """The run once it is no longer running."""
    with anyio.fail_after(timeout):
        while True:
            run = (await client.get(f"/api/runs/{run_id}")).json()
            if run["status"] not in ("running", "interrupted"):
                return run
            await anyio.sleep(0.05)


async def start(client: httpx.AsyncClient, **body: Any) -> str:
    answer = await client.post("/api/runs", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["run_id"])


def sse(text: str) -> list[dict[str, Any]]:
    """The events of an SSE body: id (if any), event, data (decoded)."""
    found = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
            found.append(fields)
    return found


# --------------------------------------------------------------------------- access


async def test_every_endpoint_but_health_needs_the_token(
    tmp_path: Path, plans: Path, tools: ToolRegistry
) -> None:
    app = create_app(settings_for(tmp_path), tools=tools, token=TOKEN)
    async with serving(app, headers=None) as anyone:
        health = await anyone.get("/api/health")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        for method, path in [
            ("GET", "/api/plans"),
            ("GET", "/api/runs"),
            ("POST", "/api/runs"),
            ("POST", "/api/ask"),
            ("GET", "/api/runs/x"),
            ("POST", "/api/runs/x/cancel"),
            ("GET", "/api/approvals"),
            ("POST", "/api/approvals/x:y"),
            ("GET", "/api/runs/x/trace"),
            ("GET", "/api/report"),
            ("GET", "/openapi.json"),
        ]:
            missing = await anyone.request(method, path)
            assert (missing.status_code, missing.json()) == (401, {"error": MISSING_TOKEN}), path
            assert missing.headers["www-authenticate"] == 'Bearer realm="dagentic"'
            wrong = await anyone.request(
                method, path, headers={"Authorization": "Bearer test-token-0123456788"}
            )
            assert (wrong.status_code, wrong.json()) == (401, {"error": WRONG_TOKEN}), path
        basic = await anyone.get("/api/runs", headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.json() == {"error": MISSING_TOKEN}
        # the token in the query is taken by the event stream only (EventSource)
        query = await anyone.get(f"/api/runs?token={TOKEN}")
        assert (query.status_code, query.json()) == (401, {"error": MISSING_TOKEN})
        stream = await anyone.get("/api/runs/x/events")
        assert stream.json() == {"error": MISSING_TOKEN_EVENTS}
        stream = await anyone.get("/api/runs/x/events?token=nope")
        assert stream.json() == {"error": WRONG_TOKEN}
        stream = await anyone.get(f"/api/runs/x/events?token={TOKEN}")
        assert (stream.status_code, stream.json()) == (
            404,
            {"error": "there is no run 'x' in the journal"},
        )
        # the page's files need no token, and lead nowhere else
        for path in ["/static/../api/runs", "/static/%2e%2e/api/runs", "/static/../../etc/passwd"]:
            sneaked = await anyone.get(path)
            assert sneaked.status_code in (401, 404), path  # a client may resolve the ..
            assert "run_id" not in sneaked.text
    assert MISSING_TOKEN == (
        "missing token: send the header 'Authorization: Bearer TOKEN' with the token dagentic "
        "serve printed at start (or the serve.token setting)"
    )
    assert WRONG_TOKEN == (
        "wrong token: use the one dagentic serve printed at start (or the serve.token setting)"
    )


async def test_responses_carry_the_security_headers_and_no_cors_unless_configured(
    client: httpx.AsyncClient, tmp_path: Path, tools: ToolRegistry
) -> None:
    answer = await client.get("/api/runs", headers={"Origin": "http://evil.example"})
    assert answer.headers["content-security-policy"] == (  # the page needs nothing more
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"
    page = await client.get("/static/app.js")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-cache"
    assert "access-control-allow-origin" not in answer.headers
    preflight = await client.options(
        "/api/runs",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers

    app = create_app(
        settings_for(tmp_path, serve={"cors_origins": ["http://ops.example"]}),
        tools=tools,
        token=TOKEN,
    )
    async with serving(app) as other:
        allowed = await other.get("/api/runs", headers={"Origin": "http://ops.example"})
        assert allowed.headers["access-control-allow-origin"] == "http://ops.example"
        refused = await other.get("/api/runs", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in refused.headers


async def test_request_bodies_over_the_limit_are_refused_unread(
    tmp_path: Path, plans: Path, tools: ToolRegistry
) -> None:
    app = create_app(
        settings_for(tmp_path, serve={"max_body_bytes": 2048}), tools=tools, token=TOKEN
    )
    too_big = {
        "error": "the request body is over serve.max_body_bytes (2048 bytes): send less, "
        "or raise the setting"
    }
    async with serving(app) as client:
        body = json.dumps({"plan_body": "x" * 3000})
        declared = await client.post(
            "/api/runs", content=body, headers={"Content-Type": "application/json"}
        )
        assert (declared.status_code, declared.json()) == (413, too_big)

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for _ in range(10):
                yield b" " * 500

        streamed = await client.post(
            "/api/runs", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert (streamed.status_code, streamed.json()) == (413, too_big)
        assert (await client.get("/api/runs")).json() == []


async def test_a_request_that_is_not_what_the_endpoint_takes_is_400(
    client: httpx.AsyncClient,
) -> None:
    both = await client.post("/api/runs", json={"plan": "chain", "plan_body": CHAIN})
    assert (both.status_code, both.json()) == (
        400,
        {
            "error": "give either plan (a name GET /api/plans lists) or plan_body (a plan as "
            "YAML text), not both"
        },
    )
    neither = await client.post("/api/runs", json={"inputs": {}})
    assert neither.json() == {
        "error": "give either plan (a name GET /api/plans lists) or plan_body (a plan as YAML text)"
    }
    unknown = await client.post("/api/runs", json={"plan": "chain", "run_as": "root"})
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid request: body.run_as: Extra inputs are not permitted"
    not_json = await client.post(
        "/api/runs", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"].startswith("invalid request: body.1: JSON decode error")
    decision = await client.post("/api/approvals/r:s", json={"decision": "maybe"})
    assert decision.status_code == 400
    assert (
        decision.json()["error"]
        == "invalid request: body.decision: Input should be 'approve' or 'deny'"
    )


# --------------------------------------------------------------------------- plans


async def test_an_invalid_plan_body_gets_the_problems_a_plan_file_gets(
    client: httpx.AsyncClient, tmp_path: Path, tools: ToolRegistry
) -> None:
    body = CHAIN.replace("tool: test.echo", "tool: test.ecko").replace(
        "steps.a.output + 1", "steps.zz.output"
    )
    answer = await client.post("/api/runs", json={"plan_body": body})
    assert answer.status_code == 422
    problems = answer.json()["problems"]
    # the same problems, lines and columns as `dagentic validate` of the same file
    file = tmp_path / "same.yaml"
    file.write_text(body, encoding="utf-8")
    with pytest.raises(PlanError) as raised:
        load_plan(file, tools)
    assert [(p["line"], p["column"], p["message"]) for p in problems] == [
        (p.line, p.column, p.message) for p in raised.value.problems
    ]
    assert (
        answer.json()["error"] == f"the plan is invalid ({len(problems)} problems); nothing was run"
    )
    assert {p["path"] for p in problems} == {"<plan_body>"}
    assert problems[0]["line"] == 10 and "test.ecko" in problems[0]["message"]

    yaml_error = await client.post("/api/runs", json={"plan_body": "steps: [unclosed"})
    assert yaml_error.status_code == 422
    [problem] = yaml_error.json()["problems"]
    file.write_text("steps: [unclosed", encoding="utf-8")
    with pytest.raises(PlanError) as raised:
        load_plan(file, tools)
    [expected] = raised.value.problems
    assert (problem["line"], problem["column"], problem["message"]) == (
        expected.line,
        expected.column,
        expected.message,
    )
    assert problem["message"].startswith("YAML syntax error")

    bad_input = await client.post(
        "/api/runs", json={"plan": "chain", "inputs": {"seconds": "soon"}}
    )
    assert bad_input.status_code == 422
    assert [p["message"] for p in bad_input.json()["problems"]] == [
        "input 'seconds' must be number, got 'soon': Input should be a valid number, unable "
        "to parse string as a number"
    ]
    assert (await client.get("/api/runs")).json() == []


async def test_plans_use_only_the_tools_the_server_allows(
    tmp_path: Path, plans: Path, tools: ToolRegistry
) -> None:
    app = create_app(
        settings_for(tmp_path, serve={"tools": ["test.echo", "notify.*"]}), tools=tools, token=TOKEN
    )
    async with serving(app) as client:
        answer = await client.post("/api/runs", json={"plan_body": CHAIN})
        assert answer.status_code == 422
        assert [(p["line"], p["column"], p["message"]) for p in answer.json()["problems"]] == [
            (
                line,
                11,
                "tool 'test.sleep' is not allowed here: the server lets runs use the tools of "
                "serve.tools (test.echo, notify.*)",
            )
            for line in (7, 13)
        ]
        by_name = await client.post("/api/runs", json={"plan": "chain"})
        assert by_name.status_code == 422
        assert by_name.json()["problems"][0]["path"] == str(plans.resolve() / "chain.yaml")


def sql_plan(source: str) -> str:
    return (
        "version: 1\nname: peek\nsteps:\n  - id: peek\n    tool: sql.schema\n"
        f"    args: {{source: {json.dumps(source)}}}\n"
    )


async def test_no_path_from_a_request_reaches_a_file_outside_the_allowed_roots(
    tmp_path: Path, plans: Path, tools: ToolRegistry
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "ok.csv").write_text("a\n1\n", encoding="utf-8")
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n", encoding="utf-8")
    (root / "link.csv").symlink_to(secret)
    home = Path.home()
    app = create_app(
        settings_for(tmp_path, sql={"allowed_roots": [str(root)]}), tools=tools, token=TOKEN
    )
    roots = str(root)

    def outside(given: str) -> str:
        return (
            f"sql: refused: source {given!r} is outside the folders plans may read "
            f"(sql.allowed_roots: {roots}); add its folder to that setting to allow it"
        )

    tricks = {
        str(root / ".." / "secret.csv"): outside(str(root / ".." / "secret.csv")),
        "../secret.csv": "sql: source '../secret.csv' does not exist",
        str(secret): outside(str(secret)),
        str(root / "link.csv"): outside(str(root / "link.csv")),
        f"file://{secret}": f"sql: source 'file://{secret}' does not exist",
        "/etc/passwd": outside("/etc/passwd"),
        "~": outside("~"),
    }
    assert home.is_dir()
    async with serving(app) as client:
        for given, message in tricks.items():
            answer = await client.post("/api/runs", json={"plan_body": sql_plan(given)})
            assert answer.status_code == 422, given
            [problem] = answer.json()["problems"]
            assert (problem["line"], problem["column"], problem["message"]) == (6, 20, message)
        # a source built from an input is judged when the call runs, by the same rule
        templated = sql_plan("${{ inputs.path }}").replace(
            "steps:", "inputs:\n  path: {type: string}\nsteps:"
        )
        run_id = await start(client, plan_body=templated, inputs={"path": str(secret)})
        run = await ended(client, run_id)
        assert run["status"] == "failed"
        assert run["failures"] == [
            {"step_id": "peek", "failure_mode": "policy_blocked", "message": outside(str(secret))}
        ]
        inside = await start(client, plan_body=sql_plan(str(root / "ok.csv")))
        assert (await ended(client, inside))["status"] == "succeeded"


async def test_a_plan_name_stays_inside_the_plan_folders(
    client: httpx.AsyncClient, plans: Path, tmp_path: Path
) -> None:
    (tmp_path / "outside.yaml").write_text(CHAIN, encoding="utf-8")
    (plans / "escape.yaml").symlink_to(tmp_path / "outside.yaml")
    for name in ["../outside", "/etc/passwd", "chain/../../outside", "..", ".hidden", "a\x00b"]:
        answer = await client.post("/api/runs", json={"plan": name})
        assert answer.status_code == 400, name
        assert answer.json() == {
            "error": f"{name!r} is not a plan name: a plan is named by its file name in the "
            "plan folders without .yaml (letters, digits, '_', '-' and '.'), as GET "
            "/api/plans lists them"
        }
    for name in ["escape", "outside", "nope"]:
        answer = await client.post("/api/runs", json={"plan": name})
        assert (answer.status_code, answer.json()) == (
            404,
            {
                "error": f"there is no plan '{name}' in the plan folders (library.folders: "
                f"{plans}); GET /api/plans lists them"
            },
        )
    listed = (await client.get("/api/plans")).json()
    assert [p["name"] for p in listed] == ["asks", "chain"]
    chain = listed[1]
    seconds = chain["inputs"]["seconds"]
    assert {k: seconds[k] for k in ("type", "default", "required", "description")} == {
        "type": "number",
        "default": 0,
        "required": False,
        "description": None,
    }
    assert (chain["plan"], chain["steps"], chain["problems"]) == ("chain", 3, [])


# --------------------------------------------------------------------------- runs


async def test_no_secret_the_settings_hold_leaves_in_an_answer(
    tmp_path: Path, plans: Path, tools: ToolRegistry
) -> None:
    secret = "sk-serve-test-secret-0123456789"
    settings = settings_for(tmp_path, model={"api_key": secret})
    app = create_app(settings, tools=tools, token=TOKEN)
    body = (
        "version: 1\nname: leak\nsteps:\n"
        f"  - {{id: echo, tool: test.echo, args: {{value: 'key={secret}'}}}}\n"
        f"  - {{id: fail, tool: test.fail, args: {{message: 'no {secret}'}}}}\n"
    )
    async with serving(app) as client:
        run_id = await start(client, plan_body=body)
        run = await ended(client, run_id)
        answer = (await client.get(f"/api/runs/{run_id}")).text
        events = (await client.get(f"/api/runs/{run_id}/events")).text
    assert secret not in answer and secret not in events
    assert run["steps"][0]["output"] == "key=***"
    assert run["failures"][0]["message"] == "no ***"


async def test_a_run_is_started_read_and_listed_with_filters(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/runs", json={"plan": "chain", "inputs": {"seconds": 0}})
    assert answer.status_code == 202
    run_id = answer.json()["run_id"]
    assert answer.json() == {"run_id": run_id, "status": "running", "url": f"/api/runs/{run_id}"}
    run = await ended(client, run_id)
    assert (run["status"], run["plan"], run["kind"], run["outputs"]) == (
        "succeeded",
        "chain",
        "plan",
        {"last": 2},
    )
    assert [
        (s["id"], s["tool"], s["status"], s["attempts"], s["depends_on"]) for s in run["steps"]
    ] == [
        ("a", "test.sleep", "succeeded", 1, []),
        ("b", "test.echo", "succeeded", 1, ["a"]),
        ("c", "test.sleep", "succeeded", 1, ["b"]),
    ]
    assert [s["output"] for s in run["steps"]] == [1, 2, 2]
    assert all(s["error"] is None and s["ended_at"] >= s["started_at"] for s in run["steps"])
    assert run["plan_graph"] == {
        "nodes": [
            {"id": "a", "tool": "test.sleep"},
            {"id": "b", "tool": "test.echo"},
            {"id": "c", "tool": "test.sleep"},
        ],
        "edges": [["a", "b"], ["b", "c"]],
    }
    assert run["critical_path"] == ["a", "b", "c"]
    assert (run["failures"], run["usage"]["steps"], run["usage"]["tool_calls"]) == ([], 3, 3)

    failing = await start(
        client,
        plan_body="version: 1\nname: oops\nsteps:\n  - {id: x, tool: test.fail, args: {message: no}}\n",
    )
    failed = await ended(client, failing)
    assert failed["failures"] == [{"step_id": "x", "failure_mode": "tool_error", "message": "no"}]

    listed = (await client.get("/api/runs")).json()
    assert [r["run_id"] for r in listed] == [failing, run_id]
    assert set(listed[0]) >= {"run_id", "plan", "status", "started_at", "ended_at", "goal"}
    by_status = (await client.get("/api/runs?status=failed")).json()
    assert [r["run_id"] for r in by_status] == [failing]
    several = (await client.get("/api/runs?status=failed,succeeded&limit=1")).json()
    assert [r["run_id"] for r in several] == [failing]
    by_plan = (await client.get("/api/runs?plan=chain")).json()
    assert [r["run_id"] for r in by_plan] == [run_id]
    assert (await client.get("/api/runs?since=2999-01-01T00:00:00Z")).json() == []
    assert len((await client.get("/api/runs?since=1h")).json()) == 2
    bad = await client.get("/api/runs?status=lost")
    assert (bad.status_code, bad.json()) == (
        400,
        {
            "error": "status lost is not one: use running, interrupted, waiting, succeeded, "
            "failed, cancelled"
        },
    )
    bad = await client.get("/api/runs?since=yesterday")
    assert bad.json() == {
        "error": "since takes an ISO date or time (2026-01-31, 2026-01-31T09:00:00Z) or a "
        "duration (30m, 1h, 2d); got 'yesterday'"
    }
    missing = await client.get("/api/runs/nope")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "there is no run 'nope' in the journal"},
    )


async def test_events_come_in_order_and_resume_after_the_last_event_id(
    client: httpx.AsyncClient,
) -> None:
    run_id = await start(client, plan="chain", inputs={"seconds": 0.2})
    live = await client.get(f"/api/runs/{run_id}/events")  # from the start, as it runs
    assert live.headers["content-type"].startswith("text/event-stream")
    events = sse(live.text)
    steps, last = events[:-1], events[-1]
    assert last["event"] == "run" and last["data"]["status"] == "succeeded"
    assert [int(e["id"]) for e in steps] == list(range(1, len(steps) + 1))
    assert all(e["event"] == "step" and e["data"]["seq"] == int(e["id"]) for e in steps)
    kinds = [(e["data"]["step_id"], e["data"]["kind"]) for e in steps]
    assert kinds == [(sid, kind) for sid in "abc" for kind in ("started", "attempt", "finished")]
    assert [e["data"]["status"] for e in steps if e["data"]["kind"] == "finished"] == [
        "succeeded"
    ] * 3

    again = await client.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": "4"})
    assert [e.get("id") for e in sse(again.text)] == [str(n) for n in range(5, len(steps) + 1)] + [
        None
    ]
    after = await client.get(f"/api/runs/{run_id}/events?after={len(steps)}")
    assert [e["event"] for e in sse(after.text)] == ["run"]
    bad = await client.get(f"/api/runs/{run_id}/events", headers={"Last-Event-ID": "x1"})
    assert (bad.status_code, bad.json()) == (
        400,
        {"error": "Last-Event-ID must be an event id (a number), got 'x1'"},
    )


async def test_a_running_run_is_cancelled_and_a_finished_one_cannot_be(
    client: httpx.AsyncClient,
) -> None:
    run_id = await start(client, plan="chain", inputs={"seconds": 30})
    answer = await client.post(f"/api/runs/{run_id}/cancel")
    assert (answer.status_code, answer.json()) == (202, {"run_id": run_id, "status": "cancelling"})
    run = await ended(client, run_id, timeout=10)
    assert run["status"] == "cancelled"
    assert run["steps"][0]["status"] == "cancelled"
    again = await client.post(f"/api/runs/{run_id}/cancel")
    assert (again.status_code, again.json()) == (
        409,
        {"error": f"run '{run_id}' cancelled already: there is nothing to cancel"},
    )
    events = sse((await client.get(f"/api/runs/{run_id}/events")).text)
    assert events[-1]["data"]["status"] == "cancelled"


async def test_approve_and_deny_make_the_waiting_run_go_on(client: httpx.AsyncClient) -> None:
    approved = await start(client, plan="asks")
    denied = await start(client, plan="asks")
    for run_id in (approved, denied):
        assert (await ended(client, run_id))["status"] == "waiting"
    waiting = (await client.get("/api/approvals")).json()
    assert [a["id"] for a in waiting] == [f"{approved}:send", f"{denied}:send"]
    first = waiting[0]
    assert {k: first[k] for k in ("run_id", "step_id", "tool", "args", "reason_asked")} == {
        "run_id": approved,
        "step_id": "send",
        "tool": "test.write",
        "args": {"text": "hello world"},
        "reason_asked": "approval",
    }
    assert first["asked_at"].endswith("+00:00")

    answer = await client.post(
        f"/api/approvals/{approved}:send", json={"decision": "approve", "by": "ann"}
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "id": f"{approved}:send",
        "run_id": approved,
        "step_id": "send",
        "item": None,
        "decision": "approved",
        "decided": 1,
        "waiting": [],
        "resumed": True,
    }
    run = await ended(client, approved)
    assert (run["status"], run["outputs"]) == ("succeeded", {"sent": "hello world"})

    await client.post(
        f"/api/approvals/{denied}:send", json={"decision": "deny", "reason": "not today"}
    )
    run = await ended(client, denied)
    assert run["status"] == "failed"
    assert run["failures"] == [
        {
            "step_id": "send",
            "failure_mode": "policy_blocked",
            "message": "step 'send': approval was denied by api: not today",
        }
    ]
    assert (await client.get("/api/approvals")).json() == []
    gone = await client.post(f"/api/approvals/{denied}:send", json={"decision": "approve"})
    assert (gone.status_code, gone.json()) == (
        409,
        {"error": f"run '{denied}' failed already: nothing of it waits any more"},
    )
    unknown = await client.post("/api/approvals/nope:send", json={"decision": "approve"})
    assert (unknown.status_code, unknown.json()) == (
        404,
        {
            "error": "nothing waits for a decision as 'nope:send': GET /api/approvals lists "
            "what waits, with its id"
        },
    )
    events = sse((await client.get(f"/api/runs/{approved}/events")).text)
    assert [e["data"]["status"] for e in events if e["event"] == "run"] == ["succeeded"]


async def test_each_foreach_item_is_decided_by_its_own_id(client: httpx.AsyncClient) -> None:
    body = (
        "version: 1\nname: each\nsteps:\n"
        "  - id: send\n    tool: test.write\n    approval: required\n"
        "    foreach: [ann, bob]\n    args: {text: '${{ item }}'}\n"
    )
    run_id = await start(client, plan_body=body)
    assert (await ended(client, run_id))["status"] == "waiting"
    waiting = (await client.get("/api/approvals")).json()
    assert [(a["id"], a["item"], a["args"]) for a in waiting] == [
        (f"{run_id}:send:0", 0, {"text": "ann"}),
        (f"{run_id}:send:1", 1, {"text": "bob"}),
    ]
    first = await client.post(f"/api/approvals/{run_id}:send:0", json={"decision": "approve"})
    assert (first.json()["waiting"], first.json()["resumed"]) == ([f"{run_id}:send:1"], False)
    assert (await client.get(f"/api/runs/{run_id}")).json()["status"] == "waiting"
    await client.post(f"/api/approvals/{run_id}:send:1", json={"decision": "approve"})
    run = await ended(client, run_id)
    assert (run["status"], run["steps"][0]["output"]) == (
        "succeeded",
        [{"written": "ann"}, {"written": "bob"}],
    )


async def test_a_decision_made_elsewhere_is_picked_up_by_the_server(
    tmp_path: Path, plans: Path, tools: ToolRegistry
) -> None:
    settings = settings_for(tmp_path)  # a lease of 3 s: the server looks every second
    app = create_app(settings, tools=tools, token=TOKEN)
    async with serving(app) as client:
        run_id = await start(client, plan="asks")
        assert (await ended(client, run_id))["status"] == "waiting"
        # as `dagentic approve` does, from another process sharing the journal
        assert open_journal(settings).store.decide(
            run_id, "send", None, approved=True, by="bob", reason=None
        )
        with anyio.fail_after(15):
            while (await client.get(f"/api/runs/{run_id}")).json()["status"] != "succeeded":
                await anyio.sleep(0.1)


async def test_runs_past_the_bound_are_refused(
    tmp_path: Path, plans: Path, tools: ToolRegistry
) -> None:
    app = create_app(settings_for(tmp_path, serve={"max_active_runs": 1}), tools=tools, token=TOKEN)
    async with serving(app) as client:
        run_id = await start(client, plan="chain", inputs={"seconds": 30})
        refused = await client.post("/api/runs", json={"plan": "chain"})
        assert (refused.status_code, refused.json()) == (
            503,
            {
                "error": "the server runs 1 run already (serve.max_active_runs is 1): try "
                "again when some have ended"
            },
        )
        await client.post(f"/api/runs/{run_id}/cancel")


async def test_a_waiting_run_can_be_cancelled(client: httpx.AsyncClient) -> None:
    run_id = await start(client, plan="asks")
    assert (await ended(client, run_id))["status"] == "waiting"
    answer = await client.post(f"/api/runs/{run_id}/cancel")
    assert answer.json() == {"run_id": run_id, "status": "cancelled"}
    run = (await client.get(f"/api/runs/{run_id}")).json()
    assert (run["status"], run["error"]) == (
        "cancelled",
        {"failure_mode": "cancelled", "message": "the run was cancelled through the API"},
    )
    assert (await client.get("/api/approvals")).json() == []
    assert run["approvals"] == [] and run["waits"] == []
    late = await client.post(f"/api/approvals/{run_id}:send", json={"decision": "approve"})
    assert (late.status_code, late.json()) == (
        409,
        {"error": f"run '{run_id}' cancelled already: nothing of it waits any more"},
    )


async def test_trace_report_and_openapi(client: httpx.AsyncClient) -> None:
    run_id = await start(
        client,
        plan_body="version: 1\nname: oops\nsteps:\n  - {id: x, tool: test.fail, args: {message: no}}\n",
    )
    await ended(client, run_id)
    trace = await client.get(f"/api/runs/{run_id}/trace")
    assert trace.status_code == 200
    body = trace.json()
    assert body["root"]["run_id"] == run_id and body["root"]["status"] == "failed"
    assert [f["failure_mode"] for f in body["failures"]] == ["tool_error"]
    assert {"timeline", "critical_paths", "usage", "file"} <= set(body)
    missing = await client.get("/api/runs/nope/trace")
    assert (missing.status_code, missing.json()["error"]) == (
        404,
        "no trace of run 'nope': runs are traced to files when tracing.exporter is 'jsonl' "
        "(the default)",
    )
    report = (await client.get("/api/report")).json()
    assert report["runs"] >= 1 and report["failure_modes"][0]["mode"] == "tool_error"
    schema = (await client.get("/openapi.json")).json()
    assert set(schema["paths"]) == {
        "/api/health",
        "/api/plans",
        "/api/runs",
        "/api/ask",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/events",
        "/api/runs/{run_id}/cancel",
        "/api/approvals",
        "/api/approvals/{approval_id}",
        "/api/runs/{run_id}/trace",
        "/api/report",
    }
    assert "RunRequest" in schema["components"]["schemas"]
    page = await client.get("/")
    assert page.status_code in (200, 404)  # the page ships when its files are built
    if page.status_code == 404:
        assert page.json()["error"].startswith("the web page is not installed")


async def test_an_ask_is_planned_run_and_answered(
    tmp_path: Path, plans: Path, tools: ToolRegistry
) -> None:
    plan = {"steps": [{"id": "total", "tool": "test.echo", "args": {"value": 42}}]}
    replies = [
        plan,
        {"answer": "The total is 42 [total].", "cited_steps": ["total"], "complete": True},
        {"passed": True, "reason": "the answer achieves the goal"},
    ]
    model = ScriptedModel(replies)
    settings = settings_for(tmp_path, serve={"tools": ["test.echo"]})
    app = create_app(settings, tools=tools, token=TOKEN, models=lambda: model)
    async with serving(app) as client:
        answer = await client.post("/api/ask", json={"goal": "What is the total?"})
        assert answer.status_code == 202
        run_id = answer.json()["run_id"]
        run = await ended(client, run_id)
        assert (run["kind"], run["status"], run["answer"]) == (
            "agent",
            "succeeded",
            "The total is 42 [total].",
        )
        assert run["usage"]["model_calls"] == 3
        [child] = run["runs"]
        assert child["status"] == "succeeded"
        # the planner was offered the tools the server allows only
        assert "test.sleep" not in model.calls[0]["messages"][0].content
        records = sse((await client.get(f"/api/runs/{run_id}/events")).text)
        kinds = [e["data"].get("kind") for e in records if e["event"] == "record"]
        assert {"plan", "model_call", "answer"} <= set(kinds)
        assert records[-1]["data"]["status"] == "succeeded"
        empty = await client.post("/api/ask", json={"goal": ""})
        assert empty.status_code == 400


# --------------------------------------------------------------------------- restarts


async def test_a_run_outlives_a_stop_of_the_server(
    tmp_path: Path, plans: Path, tools: ToolRegistry
) -> None:
    settings = settings_for(tmp_path)
    first = create_app(settings, tools=tools, token=TOKEN)
    async with serving(first) as client:
        run_id = await start(client, plan="chain", inputs={"seconds": 0.6})
        with anyio.fail_after(10):  # stopped while c, the second sleep, runs
            while (await client.get(f"/api/runs/{run_id}")).json()["steps"][2][
                "status"
            ] != "pending" or (
                (await client.get(f"/api/runs/{run_id}")).json()["steps"][1]["status"]
                != "succeeded"
            ):
                await anyio.sleep(0.05)
    store = open_journal(settings).store
    record = store.run(run_id)
    assert (record.status, record.owner, record.shown_status) == ("running", None, "interrupted")

    second = create_app(settings, tools=tools, token=TOKEN)
    async with serving(second) as client:
        run = await ended(client, run_id)
        assert (run["status"], run["outputs"]) == ("succeeded", {"last": 2})
    events = store.events(run_id)
    done = [e["step_id"] for e in events if e["kind"] == "finished" and e["status"] == "succeeded"]
    reused = [e["step_id"] for e in events if e["kind"] == "reused"]
    # every step ran to completion once; the resumed run reused what succeeded before
    assert sorted(s for s in done if s not in reused) == sorted(set(done) - set(reused))
    assert [e for e in events if e["kind"] == "attempt" and e["step_id"] == "a"].__len__() == 1
    assert store.run(run_id).status == "succeeded"


def test_dagentic_resume_goes_on_with_a_run_the_api_started(
    tmp_path: Path, plans: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (plans / "post.yaml").write_text(
        "version: 1\nname: post\nsteps:\n"
        "  - {id: post, tool: notify.log, approval: required, args: {message: hi}}\n"
        "outputs: {said: '${{ steps.post.output.message }}'}\n",
        encoding="utf-8",
    )
    settings = settings_for(tmp_path)

    async def submitted() -> str:
        app = create_app(settings, tools=load_tools(), token=TOKEN)
        async with serving(app) as client:
            run_id = await start(client, plan="post")
            assert (await ended(client, run_id))["status"] == "waiting"
            return run_id

    run_id = anyio.run(submitted)
    close_journals()
    isolate(tmp_path, monkeypatch)  # the command line's own settings, on the same journal
    monkeypatch.setenv("DAGENTIC_RUNS_DIR", str(tmp_path / "runs"))
    assert invoke("approve", run_id, "post").exit_code == 0
    resumed = invoke("resume", run_id, "--json")
    assert resumed.exit_code == 0, resumed.output
    data = json.loads(resumed.stdout)
    assert (data["run_id"], data["status"], data["outputs"]) == (
        run_id,
        "succeeded",
        {"said": "hi"},
    )


# --------------------------------------------------------------------------- the command


def test_the_command_refuses_a_non_loopback_address_without_a_token(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(DAGENTIC), "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=script_env({"COLUMNS": "400"}),
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "error: refusing to listen on 0.0.0.0 without a configured token: anyone who can "
        "reach it could run plans. Set serve.token (DAGENTIC_SERVE__TOKEN) to a long random "
        "secret, or listen on 127.0.0.1\n"
    )


def test_without_the_serve_extra_the_command_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate(tmp_path, monkeypatch)
    for name in [
        m for m in sys.modules if m == "dagentic.serve" or m.startswith("dagentic.serve.")
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    result = invoke("serve")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "error: dagentic serve needs the serve extra (fastapi is missing): pip install "
        "'dagentic[serve]'\n"
    )


def test_a_weak_token_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)
    monkeypatch.setenv("DAGENTIC_SERVE__TOKEN", "hunter2")
    result = invoke("serve", "--port", "0")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "error: serve.token is too weak: use at least 16 characters, no spaces at its ends "
        "(e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))')\n"
    )


def test_the_command_says_when_its_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate(tmp_path, monkeypatch)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("serve", "--port", str(port))
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_the_command_prints_its_address_once_and_serves_until_sigterm(
    tmp_path: Path, plans: Path
) -> None:
    (plans / "hello.yaml").write_text(
        "version: 1\nname: hello\nsteps:\n  - {id: say, tool: notify.log, args: {message: hi}}\n"
        "  - {id: post, tool: notify.log, approval: required, args: {message: bye}}\n",
        encoding="utf-8",
    )
    env = script_env(
        {
            "DAGENTIC_RUNS_DIR": str(tmp_path / "runs"),
            "DAGENTIC_LIBRARY__FOLDERS": json.dumps([str(plans)]),
            "DAGENTIC_CACHE__ENABLED": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    server = subprocess.Popen(
        [str(DAGENTIC), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("dagentic serve: http://127.0.0.1:"), line
        url, _, token = line.split()[-1].partition("?token=")
        assert len(token) >= 40
        assert server.stdout.readline() == (
            "  (the token is new at each start; set serve.token to keep one)\n"
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"{url}api/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert health.json() == {"status": "ok"}
        assert httpx.get(f"{url}api/runs", timeout=5).status_code == 401
        headers = {"Authorization": f"Bearer {token}"}
        started = httpx.post(f"{url}api/runs", json={"plan": "hello"}, headers=headers, timeout=10)
        assert started.status_code == 202
        run_id = started.json()["run_id"]
        # followed live: the run waits, is approved meanwhile, and the stream tells its end
        told: list[dict[str, Any]] = []
        with httpx.stream(
            "GET", f"{url}api/runs/{run_id}/events?token={token}", timeout=20
        ) as stream:
            block = ""
            for line in stream.iter_lines():
                if line:
                    block += line + "\n"
                    continue
                told += sse(block)
                block = ""
                if told and told[-1]["event"] == "run" and told[-1]["data"]["status"] == "waiting":
                    decided = httpx.post(
                        f"{url}api/approvals/{run_id}:post",
                        json={"decision": "approve"},
                        headers=headers,
                        timeout=10,
                    )
                    assert decided.json()["resumed"] is True
        runs_told = [e["data"]["status"] for e in told if e["event"] == "run"]
        assert runs_told == ["waiting", "succeeded"]
        ids = [int(e["id"]) for e in told if "id" in e]
        assert ids == sorted(set(ids))  # in order, none twice
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == -signal.SIGTERM, err  # uvicorn stops, then ends as signalled
    assert token not in err and token not in out  # printed once, never logged
