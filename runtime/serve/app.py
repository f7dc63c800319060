"""The ASGI app of ``dagentic serve``: the HTTP API (FastAPI, its OpenAPI schema at
``/openapi.json``) and the web page's files, behind the token check, the body limit and
the security headers of :mod:`.security`. :func:`create_app` makes it; the runs live in
its :class:`~.runs.RunManager` (``app.state.manager``), started and stopped with the app's
lifespan. Every answer is JSON (the page's files aside); nothing from outside is rendered
as HTML by the server."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from ..errors import DagenticError, JournalError, PlanError
from ..graph import CompiledPlan
from ..settings import Settings
from ..threads import run_in_thread
from .plans import (
    PlanNotFound,
    cached_named,
    compile_body,
    compile_named,
    list_plans,
    problem_json,
)
from .runs import FINAL, ApiError, RunManager
from .security import Guard, new_token
from .views import approval_json, run_detail, run_summary

__all__ = [
    "MIN_TOKEN",
    "STATIC",
    "AskRequest",
    "DecisionRequest",
    "JSONOut",
    "RunRequest",
    "create_app",
    "dump",
]

STATIC = Path(__file__).parent / "static"
MIN_TOKEN = 16  # characters of a token at least
_STATES = ("running", "interrupted", "waiting", "succeeded", "failed", "cancelled")


class JSONOut(JSONResponse):
    """JSON in ASCII (a lone surrogate from a tool's text is sent as its escape), with
    what JSON cannot hold (NaN, infinities) sent as text, and no secret dagentic holds."""

    def render(self, content: Any) -> bytes:
        return dump(content).encode("ascii")


def dump(content: Any) -> str:
    """``content`` as the API sends it: ASCII JSON with every secret dagentic holds (the
    settings' keys and tokens, as :mod:`dagentic.redact` matches them) replaced by
    ``***``: a tool's output or error is data, redacted where it leaves, here too."""
    from ..redact import redact

    try:
        text = json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=str
        )
    except ValueError:
        text = json.dumps(_finite(content), ensure_ascii=True, separators=(",", ":"), default=str)
    return redact(text)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class RunRequest(BaseModel):
    """A run to start: a plan of the plan folders by name, or a plan body, and inputs."""

    model_config = ConfigDict(extra="forbid")

    plan: str | None = Field(None, description="A plan's name, as GET /api/plans lists it.")
    plan_body: str | None = Field(
        None, description="A plan as YAML text, validated as a plan file is."
    )
    inputs: dict[str, JsonValue] = Field(
        default_factory=dict, description="The plan's inputs (JSON values, or strings)."
    )


class AskRequest(BaseModel):
    """A goal for the agent (``dagentic ask``)."""

    model_config = ConfigDict(extra="forbid")

    goal: str = Field(min_length=1, max_length=4000, description="What you want done.")


class DecisionRequest(BaseModel):
    """A decision on a call that waits for approval."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "deny"]
    reason: str | None = Field(None, max_length=2000, description="Why, kept with it.")
    by: str | None = Field(
        None, max_length=200, description="Who decides (kept as api:BY; default: api)."
    )


def _public(method: str, path: str) -> bool:
    """What needs no token: the health check, and the page's own files (no data)."""
    if method not in ("GET", "HEAD"):
        return False
    return path in ("/", "/favicon.ico", "/api/health") or path.startswith("/static/")


def create_app(
    settings: Settings | None = None,
    *,
    tools: Any = None,
    token: str | None = None,
    models: Callable[[], Any] | None = None,
) -> FastAPI:
    """The app: ``settings`` (default: those of the working directory), ``tools``
    (default: every installed plugin's), ``token`` (default: ``serve.token``, else a new
    one: ``app.state.token``), ``models`` (makes the models ``ask`` uses; default: those
    the settings name)."""
    from importlib.metadata import version

    settings = settings or Settings()
    if tools is None:
        from ..plugin_manager import load_settings, load_tools, make_plugin_manager

        plugins = make_plugin_manager()
        load_settings(plugin_manager=plugins)
        tools = load_tools(plugin_manager=plugins)
    if token is None:
        configured = settings.serve.token
        token = configured.get_secret_value() if configured is not None else new_token()
    if len(token.strip()) < MIN_TOKEN or token != token.strip():
        raise DagenticError(
            f"serve.token is too weak: use at least {MIN_TOKEN} characters, no spaces at its "
            "ends (e.g. the output of: python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')"
        )
    manager = RunManager(settings, tools, models=models)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            await tg.start(manager.run)
            yield
            tg.cancel_scope.cancel()

    app = FastAPI(
        title="dagentic",
        version=version("dagentic"),
        summary="Start plan runs and asks, follow them live, decide approvals, read traces.",
        docs_url=None,  # the interactive pages load scripts from a CDN: not served
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
        default_response_class=JSONOut,
    )
    app.state.manager = manager
    app.state.token = token
    app.state.settings = settings
    _routes(app, manager, settings)
    _errors(app)
    app.add_middleware(Guard, token=token, max_body=settings.serve.max_body_bytes, public=_public)
    if settings.serve.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.serve.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONOut:
        return JSONOut({"error": exc.message, **exc.extra}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONOut:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"there is no {request.url.path[:200]} here: /openapi.json lists the API"
        return JSONOut({"error": message}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONOut:
        problems: list[dict[str, Any]] = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()))
            problems.append(
                {"line": None, "column": None, "message": f"{where}: {error.get('msg')}"}
            )
        shown = "; ".join(str(p["message"]) for p in problems[:5])
        return JSONOut(
            {"error": f"invalid request: {shown}", "problems": problems}, status_code=400
        )

    @app.exception_handler(JournalError)
    async def journal_error(request: Request, exc: JournalError) -> JSONOut:
        return JSONOut({"error": exc.message}, status_code=503)

    @app.exception_handler(Exception)
    async def broken(request: Request, exc: Exception) -> JSONOut:
        # the server's own failure: told as JSON (the traceback goes to its log only)
        return JSONOut(
            {
                "error": f"the server failed on this request ({type(exc).__name__}); its log "
                "says more"
            },
            status_code=500,
        )


def _routes(app: FastAPI, manager: RunManager, settings: Settings) -> None:
    store = manager.store
    tools = manager.tools

    async def record_of(run_id: str) -> Any:
        record = await run_in_thread(store.run, run_id) if len(run_id) <= 200 else None
        if record is None:
            raise ApiError(404, f"there is no run '{run_id[:200]}' in the journal")
        return record

    @app.get("/api/health", tags=["server"])
    async def health() -> dict[str, str]:
        """Whether the server answers (no token needed)."""
        return {"status": "ok"}

    @app.get("/api/plans", tags=["plans"])
    async def plans() -> JSONOut:
        """The plans of the plan folders (``library.folders``), with their inputs."""
        return JSONOut(await run_in_thread(list_plans, settings, tools))

    @app.post("/api/runs", status_code=202, tags=["runs"])
    async def start_run(request: Annotated[RunRequest, Body()]) -> JSONOut:
        """Start a run of a plan (by name) or of a plan body, with inputs. 202 once the
        journal has it; 422 with the problems (line, column) of an invalid plan."""
        from ..executor import resolve_inputs

        if (request.plan is None) == (request.plan_body is None):
            raise ApiError(
                400,
                "give either plan (a name GET /api/plans lists) or plan_body (a plan as "
                "YAML text), not both"
                if request.plan is not None
                else "give either plan (a name GET /api/plans lists) or plan_body (a plan "
                "as YAML text)",
            )
        try:
            compiled: CompiledPlan | None
            if request.plan is not None:
                compiled = cached_named(settings, tools, request.plan)
                if compiled is None:
                    compiled = await run_in_thread(compile_named, settings, tools, request.plan)
            else:
                assert request.plan_body is not None
                compiled = await run_in_thread(compile_body, settings, tools, request.plan_body)
            values = resolve_inputs(compiled.plan, request.inputs)
        except PlanNotFound as exc:
            raise ApiError(400 if exc.invalid else 404, exc.message) from exc
        except PlanError as exc:
            count = len(exc.problems)
            raise ApiError(
                422,
                f"the plan is invalid ({count} problem{'' if count == 1 else 's'}); nothing "
                "was run",
                problems=[problem_json(p) for p in exc.problems],
            ) from exc
        run_id = await manager.submit(compiled, values)
        return JSONOut(
            {"run_id": run_id, "status": "running", "url": f"/api/runs/{run_id}"},
            status_code=202,
        )

    @app.post("/api/ask", status_code=202, tags=["runs"])
    async def ask(request: Annotated[AskRequest, Body()]) -> JSONOut:
        """Start an agent run for a goal (as ``dagentic ask``): 202 with its run id."""
        run_id = await manager.ask(request.goal)
        return JSONOut(
            {"run_id": run_id, "status": "running", "url": f"/api/runs/{run_id}"},
            status_code=202,
        )

    @app.get("/api/runs", tags=["runs"])
    async def runs(
        status: Annotated[
            str | None,
            Query(
                description="running, interrupted, waiting, succeeded, failed or cancelled; several with commas."
            ),
        ] = None,
        plan: Annotated[str | None, Query(max_length=200, description="A plan's name.")] = None,
        since: Annotated[
            str | None,
            Query(max_length=64, description="Started since: an ISO date or time, or 30m, 1h, 2d."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> JSONOut:
        """The runs of the journal, newest first."""
        wanted = {s.strip() for s in (status or "").split(",") if s.strip()}
        unknown = sorted(wanted - set(_STATES))
        if unknown:
            raise ApiError(
                400,
                f"status {', '.join(unknown)[:200]} is not one: use {', '.join(_STATES)}",
            )
        after = _since(since)
        stored = sorted({"running" if s == "interrupted" else s for s in wanted})
        exact = not ({"running", "interrupted"} & wanted) or {"running", "interrupted"} <= wanted
        fetch = limit if exact and plan is None else 10_000
        records = await run_in_thread(partial(store.runs, status=stored, since=after, limit=fetch))
        records = [
            r
            for r in records
            if (not wanted or r.shown_status in wanted) and (plan is None or r.plan_name == plan)
        ][:limit]
        waits: dict[str, list[str]] = {}
        for a in await run_in_thread(store.approvals):
            waits.setdefault(a.run_id, []).append(approval_json(a)["id"])
        return JSONOut(
            [run_summary(r, None if r.status in FINAL else waits.get(r.run_id)) for r in records]
        )

    @app.get("/api/runs/{run_id}", tags=["runs"])
    async def run(run_id: str) -> JSONOut:
        """A run whole: steps, their graph, the critical path, outputs, failures, usage."""
        record = await record_of(run_id)
        return JSONOut(await run_in_thread(run_detail, store, record, tools))

    @app.get("/api/runs/{run_id}/events", tags=["runs"])
    async def events(
        run_id: str,
        request: Request,
        after: Annotated[
            int | None, Query(ge=0, le=2**53, description="Events after this id.")
        ] = None,
        token: Annotated[
            str | None,
            Query(description="The token, for a browser's EventSource (this endpoint only)."),
        ] = None,
    ) -> Any:
        """The run's events as Server-Sent Events: ``step`` events from the journal (ids:
        its sequence numbers), ``record`` events of an agent run, a ``run`` event when it
        waits and one with its final status, last. ``Last-Event-ID`` (or ``after``)
        replays from the journal first."""
        from sse_starlette import EventSourceResponse

        await record_of(run_id)
        last = request.headers.get("last-event-id")
        start = after or 0
        if last is not None and last.strip():
            if not last.strip().isdigit() or len(last.strip()) > 16:
                raise ApiError(
                    400, f"Last-Event-ID must be an event id (a number), got {last[:40]!r}"
                )
            start = int(last.strip())
        return EventSourceResponse(
            manager.follow(run_id, start),
            ping=15,
            send_timeout=30,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.post("/api/runs/{run_id}/cancel", status_code=202, tags=["runs"])
    async def cancel(run_id: str) -> JSONOut:
        """Cancel a run: 202, ``cancelling`` while it stops, or ``cancelled``."""
        await record_of(run_id)
        status = await manager.cancel(run_id)
        return JSONOut({"run_id": run_id, "status": status}, status_code=202)

    @app.get("/api/approvals", tags=["approvals"])
    async def approvals() -> JSONOut:
        """The calls that wait for a decision, with their resolved arguments."""
        waiting = await run_in_thread(store.approvals)
        open_runs: dict[str, bool] = {}
        shown = []
        for a in waiting:
            if a.run_id not in open_runs:
                record = await run_in_thread(store.run, a.run_id)
                open_runs[a.run_id] = record is not None and record.status not in FINAL
            if open_runs[a.run_id]:
                shown.append(approval_json(a))
        return JSONOut(shown)

    @app.post("/api/approvals/{approval_id:path}", tags=["approvals"])
    async def decide(approval_id: str, request: Annotated[DecisionRequest, Body()]) -> JSONOut:
        """Approve or deny a waiting call; the run goes on in the server once nothing of
        it waits."""
        by = f"api:{request.by.strip()}" if request.by and request.by.strip() else "api"
        return JSONOut(
            await manager.decide(
                approval_id, approve=request.decision == "approve", reason=request.reason, by=by
            )
        )

    @app.get("/api/runs/{run_id}/trace", tags=["traces"])
    async def trace(run_id: str) -> JSONOut:
        """The run's trace as ``dagentic trace RUN_ID --json`` gives it: timeline, critical
        path, failures with their modes, usage."""
        return JSONOut(await run_in_thread(_trace, manager, settings, run_id[:200]))

    @app.get("/api/report", tags=["traces"])
    async def report(
        since: Annotated[
            str | None,
            Query(
                max_length=64, description="Runs started since: ISO date or time, or 30m, 1h, 2d."
            ),
        ] = None,
    ) -> JSONOut:
        """Totals over the traced runs: runs by status, failure modes, step latency per
        tool (``dagentic report --json``)."""
        from .. import traceview

        after = _since(since)
        from datetime import UTC, datetime

        when = datetime.fromtimestamp(after, UTC) if after is not None else None

        def read() -> dict[str, Any]:
            _flush(manager)
            return traceview.report(settings.runs_dir, when)

        return JSONOut(await run_in_thread(read))

    @app.get("/", include_in_schema=False)
    async def page() -> Any:
        index = STATIC / "index.html"
        if not index.is_file():
            raise ApiError(
                404,
                "the web page is not installed (dagentic/serve/static/index.html is "
                "missing); the API answers: /openapi.json describes it",
            )
        return FileResponse(index, headers={"Cache-Control": "no-store"})

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")


def _since(since: str | None) -> float | None:
    if since is None or not since.strip():
        return None
    from ..traceview import parse_since

    try:
        return parse_since(since).timestamp()
    except (ValueError, OverflowError):
        raise ApiError(
            400,
            "since takes an ISO date or time (2026-01-31, 2026-01-31T09:00:00Z) or a "
            f"duration (30m, 1h, 2d); got {since[:64]!r}",
        ) from None


def _flush(manager: RunManager) -> None:
    """Export the spans buffered so far (run files are read next)."""
    tracing = manager.executor.tracing
    if tracing is not None:
        tracing.flush(5000)


def _trace(manager: RunManager, settings: Settings, run_id: str) -> dict[str, Any]:
    from .. import traceview
    from ..runfiles import find_run, read_spans

    _flush(manager)
    try:
        path = find_run(settings.runs_dir, run_id)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    if path is None:
        exporter = settings.tracing.exporter
        now = "" if exporter == "jsonl" else f"; it is '{exporter}' now"
        raise ApiError(
            404,
            f"no trace of run '{run_id}': runs are traced to files when tracing.exporter "
            f"is 'jsonl' (the default){now}",
        )
    spans = list(read_spans(path))
    if not spans:
        raise ApiError(404, f"the trace of run '{run_id}' holds no spans yet")
    return {"file": str(path), **traceview.analyse(spans, run_id)}
