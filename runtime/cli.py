"""The ``dagentic`` command line. Exit codes: 0 succeeded, 1 the run failed, 2 the plan or
the command line was invalid, 3 the run waits for a person's approval (it is kept in the
durable journal: ``dagentic approvals`` lists what waits, ``dagentic approve`` or ``deny``
decides, ``dagentic resume`` goes on)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, cast

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .cli_cache import cache_app
from .cli_config import config_app
from .cli_plans import feedback, plans_app
from .cli_plugin import plugin_app
from .cli_runs import approvals, approve, deny, runs_app
from .cli_serve import serve as serve_command
from .display import (
    inline_value,
    safe_json,
    safe_log_event,
    safe_markup,
    safe_text,
)
from .errors import ClusterError, DagenticError, JournalError, PlanError, PluginError

# What a command needs loads inside it (plans, settings, plugins and their tools, pydantic,
# the executor with OpenTelemetry, structlog, models, memory, the sandbox): `dagentic
# --help` loads typer and rich only, and `dagentic validate` what validating needs
# (tests/test_startup.py).
if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from structlog.typing import Processor

    from .executor import Executor
    from .graph import CompiledPlan
    from .isolation import SandboxResult
    from .result import RunResult, RunStatus
    from .settings import Settings
    from .tools import ToolRegistry

__all__ = ["add_plugin_commands", "app", "main"]

app = typer.Typer(
    name="dagentic",
    help="Run agent plans: typed DAGs of tool calls, in parallel where the graph allows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
INVALID = 2
FAILED = 1
WAITING = 3  # a step waits for a person's decision: not a failure, the run goes on later
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Approve every step that asks for approval.")
]


class Backend(StrEnum):
    process = "process"
    ray = "ray"


BackendOption = Annotated[
    Backend | None,
    typer.Option(
        "--backend",
        help="Where tool calls run: process, or ray (a Ray cluster: ray.address) "
        "(default: execution.backend).",
    ),
]


def _stdout() -> Console:
    return Console(soft_wrap=True)


def _stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _print_json(value: Any) -> None:
    """What every ``--json`` prints: JSON in printable ASCII, so no character a terminal
    acts on reaches it (see :func:`~dagentic.display.safe_json`)."""
    print(safe_json(value))


def _fail(message: str, code: int = INVALID) -> typer.Exit:
    _stderr().print(f"[red]error:[/red] {safe_markup(message)}", highlight=False)
    return typer.Exit(code)


@app.callback()
def _configure(
    verbose: Annotated[
        int,
        typer.Option("--verbose", "-v", count=True, help="More log output (-v info, -vv debug)."),
    ] = 0,
) -> None:
    """Configure logging at the command-line edge, never on import."""
    import logging

    _import_sparing_rich("structlog")
    import structlog

    from .redact import guard_streams, structlog_processor
    from .settings import Settings

    try:
        settings = Settings()
    except Exception as exc:
        raise _fail(f"invalid settings: {exc}") from exc
    level = {0: settings.log_level, 1: "info"}.get(verbose, "debug")
    guard_streams()  # no secret dagentic holds is printed, whatever prints it
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            cast("Processor", structlog_processor),  # typed for the dicts events are
            safe_log_event,  # what a step or tool logs is shown, never performed
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # Resolved per logger, so a replaced sys.stderr (tests, embedding) is honoured.
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )


def _tools() -> ToolRegistry:
    from .plugin_manager import load_settings, load_tools, make_plugin_manager

    try:
        plugins = make_plugin_manager()
        load_settings(plugin_manager=plugins)  # an unknown section or bad value stops here
        return load_tools(plugin_manager=plugins)
    except DagenticError as exc:
        raise _fail(exc.message) from exc


def _report_plan_error(error: PlanError) -> typer.Exit:
    console = _stderr()
    for problem in error.problems:
        console.print(safe_markup(str(problem)), highlight=False)
    console.print(f"[red]{_count(len(error.problems), 'problem')}; nothing was run[/red]")
    return typer.Exit(INVALID)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _parse_inputs(pairs: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise _fail(f"-i expects key=value, got {pair!r}")
        values[key.strip()] = value
    return values


@app.command()
def run(
    plan: Annotated[Path, typer.Argument(help="The YAML plan file.")],
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", metavar="KEY=VALUE", help="A plan input; repeat for more."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the RunResult as JSON.")] = False,
    yes: YesOption = False,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Cancel the rest at the first failure.")
    ] = False,
    timeout: Annotated[float | None, typer.Option(help="Deadline of the whole run (s).")] = None,
    backend: BackendOption = None,
) -> None:
    """Validate and run a plan. Exit 0 succeeded, 1 failed, 2 invalid, 3 waits for approval.

    Exit 0 if the run succeeded, 1 if it failed, 2 if the plan or the command line is
    invalid, 3 if it waits for approval: a step asks, and neither --yes nor a terminal
    answers. The waiting run is kept in the durable journal: `dagentic approvals` lists what
    waits, `dagentic approve` or `dagentic deny` decides, `dagentic resume` goes on."""
    from .executor import resolve_inputs
    from .settings import Settings

    tools = _tools()
    settings = Settings()
    if backend is not None:
        settings.execution.backend = backend.value
    executor = _executor(tools, settings=settings, fail_fast=fail_fast or None)
    try:
        compiled = executor.compile(plan)
        values = _parse_inputs(inputs or [])
        resolve_inputs(compiled.plan, values)
    except PlanError as exc:
        raise _report_plan_error(exc) from exc
    if compiled.file is not None:  # the journal keeps where it is, for `dagentic resume`
        compiled.file = str(Path(compiled.file).resolve())
    estimated = None
    if executor.tracing is not None:  # `dagentic trace` shows it against the run
        from .estimate import run_attributes

        estimated = run_attributes(compiled, values, executor.settings)
    result, live = _execute(
        executor,
        compiled,
        lambda: executor.run(compiled, values, timeout=timeout, trace_attributes=estimated),
        yes=yes,
        as_json=as_json,
    )
    _report_run(result, executor, compiled, as_json=as_json, live=live)


class PlanChanged(StrEnum):
    refuse = "refuse"
    rerun = "rerun"


@app.command()
def resume(
    run_id: Annotated[
        str, typer.Argument(help="The run to go on with: its id, or its start (unique).")
    ],
    plan_changed: Annotated[
        PlanChanged,
        typer.Option(
            "--plan-changed",
            help="If the plan file changed since the run started: refuse (naming the "
            "changed steps), or rerun the changed steps and reuse the rest.",
        ),
    ] = PlanChanged.refuse,
    yes: YesOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the RunResult as JSON.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Deadline of the resumed run (s).")] = None,
    backend: BackendOption = None,
) -> None:
    """Go on with a run that waits, crashed or was cancelled. Exit codes as `dagentic run`.

    The run is read from the durable journal: here, or in another process or on another
    machine that shares it. Steps that succeeded are not run again; decisions made with
    `dagentic approve` or `dagentic deny` stand. If the plan file changed since the run
    started, resuming is refused naming the changed steps, unless --plan-changed rerun.
    Exit 0 if the run succeeded, 1 if it failed or cannot be resumed, 2 if the command line
    is invalid, 3 if it waits for approval again."""
    from .cli_runs import find_run, open_run_store
    from .settings import Settings

    tools = _tools()
    settings = Settings()
    if backend is not None:
        settings.execution.backend = backend.value
    store = open_run_store(settings)
    record = find_run(store, run_id)
    parent = store.run(record.parent_id) if record.parent_id is not None else None
    if parent is not None and parent.kind == "agent":  # its agent goes on, and runs it
        _stderr().print(
            f"[dim]run {safe_markup(record.run_id)} is a plan run of agent run "
            f"{safe_markup(parent.run_id)}: resuming that[/dim]",
            highlight=False,
        )
        record = parent
    if record.kind == "agent":
        _resume_agent(record.run_id, settings, tools, yes=yes, as_json=as_json)
    executor = _executor(tools, settings=settings)
    plan: CompiledPlan | None = None
    try:
        if record.plan_file is not None and Path(record.plan_file).is_file():
            plan = executor.compile(Path(record.plan_file))  # a change is told, and refused
        shown = plan or executor.compile(record.plan)
    except PlanError as exc:
        raise _report_plan_error(exc) from exc
    result, live = _execute(
        executor,
        shown,
        lambda: executor.resume(
            record.run_id, plan=plan, plan_changed=plan_changed.value, timeout=timeout
        ),
        yes=yes,
        as_json=as_json,
    )
    _report_run(result, executor, shown, as_json=as_json, live=live)


def _resume_agent(
    run_id: str, settings: Settings, tools: ToolRegistry, *, yes: bool, as_json: bool
) -> NoReturn:
    """Resume an agent run (``dagentic ask``), and exit as ``ask`` does."""
    import anyio

    from .agent import resume_agent_run
    from .progress import render_answer

    asks = not yes and not as_json and sys.stdin.isatty() and sys.stderr.isatty()
    approver = _approver(yes, asks)
    try:
        result = anyio.run(
            lambda: resume_agent_run(run_id, settings=settings, tools=tools, approver=approver)
        )
    except DagenticError as exc:
        raise _fail(exc.message, FAILED) from exc
    if as_json:
        _print_json(result)
    else:
        render_answer(result, _stdout())
    if result.waiting:
        _say_waiting(result, run_id)
    raise typer.Exit(_exit_code(result.status))


def _executor(tools: ToolRegistry, **options: Any) -> Executor:
    """An executor with the settings' durable journal; exits 1 if the journal cannot be
    opened, 2 if the settings ask for what is not installed (a tracing exporter, say)."""
    from .executor import Executor

    try:
        return Executor(tools, **options)
    except (JournalError, ClusterError) as exc:
        raise _fail(exc.message, FAILED) from exc
    except DagenticError as exc:
        raise _fail(exc.message) from exc


def _execute(
    executor: Executor,
    compiled: CompiledPlan,
    start: Callable[[], Awaitable[RunResult]],
    *,
    yes: bool,
    as_json: bool,
) -> tuple[RunResult, bool]:
    """Run ``start()`` (a run or a resumption of ``compiled``) as the command line does:
    a live table on a terminal (then also the approver that asks there, else --yes or
    none: a step that asks waits), the durable journal kept, Ctrl-C and SIGTERM cancelling
    the run. Returns the result and whether the live table showed its steps; exits 1 if
    the journal fails or refuses (a finished run, a changed plan, another owner)."""
    import anyio

    from .journal import Journals, LogJournal
    from .progress import LiveProgress

    interactive = sys.stderr.isatty() and not as_json
    progress = LiveProgress(compiled, _stderr()) if interactive else None
    executor.approver = _approver(
        yes, interactive and sys.stdin.isatty(), pause=progress.paused if progress else None
    )
    executor.journal = Journals(executor.journal, LogJournal(), progress)

    async def main() -> RunResult | DagenticError:
        async with anyio.create_task_group() as group:
            group.start_soon(_cancel_on_signal, executor)
            try:
                outcome: RunResult | DagenticError = await start()
            except DagenticError as exc:  # told as itself, not in an exception group
                outcome = exc
            group.cancel_scope.cancel()
        return outcome

    if progress is not None:
        with progress:
            result = anyio.run(main)
    else:
        result = anyio.run(main)
    if isinstance(result, PlanError):  # the stored plan no longer compiles (a tool is gone)
        raise _report_plan_error(result)
    if isinstance(result, DagenticError):  # the journal cannot be used, or refuses
        raise _fail(result.message, FAILED)
    return result, progress is not None


def _exit_code(status: RunStatus) -> int:
    value = str(status)
    return 0 if value == "succeeded" else WAITING if value == "waiting" else FAILED


def _report_run(
    result: RunResult, executor: Executor, compiled: CompiledPlan, *, as_json: bool, live: bool
) -> NoReturn:
    """Print a run's result (the steps too unless the live table showed them), say what
    waits and what to do next, export its trace, and exit with its code."""
    from .progress import render_result

    if as_json:
        _print_json(result)
    else:
        render_result(result, _stdout(), steps=not live, plan=compiled.plan)
    if result.waiting:
        _say_waiting(result)
    _flush_trace(executor.tracing, executor.settings, result.run_id)
    raise typer.Exit(_exit_code(result.status))


def _say_waiting(result: RunResult, resume_id: str | None = None) -> None:
    """Which steps wait for a decision, and the commands that go on (standard error):
    the calls are decided in the run that waits, and ``resume_id`` (default: that run; an
    agent's run for its plan runs) is resumed."""
    console = _stderr()
    rid = safe_markup(result.run_id, one_line=True)
    again = safe_markup(resume_id or result.run_id, one_line=True)
    steps = [safe_markup(s, one_line=True) for s in result.waiting]
    console.print(
        f"[yellow]waiting:[/yellow] run {rid} waits for a decision on "
        f"{'step' if len(steps) == 1 else 'steps'} {', '.join(steps)}; next:",
        highlight=False,
    )
    console.print("  dagentic approvals", highlight=False)
    for step in steps:
        console.print(
            f"  dagentic approve {rid} {step}    (or: dagentic deny {rid} {step} --reason TEXT)",
            highlight=False,
        )
    console.print(f"  dagentic resume {again}", highlight=False)


def _flush_trace(tracing: Any, settings: Settings, run_id: str) -> None:
    """Export the run's spans now (its file is complete when the command ends; a collector
    gets at most two export timeouts) and say how to see them."""
    if tracing is None:
        return
    config = settings.tracing
    wait = config.otlp.timeout * 2 if config.exporter == "otlp" else 30.0
    if not tracing.flush(int(wait * 1000)):
        _stderr().print(
            f"[yellow]warning:[/yellow] the trace was not all exported within "
            f"{wait:g} s (tracing.exporter is '{config.exporter}')",
            highlight=False,
        )
    elif config.exporter == "jsonl" and run_id:
        _stderr().print(f"[dim]trace: dagentic trace {safe_markup(run_id)}[/dim]", highlight=False)


def _approver(yes: bool, interactive: bool, pause: Any = None) -> Any:
    """--yes approves everything; a terminal (standard input and error both) asks, one
    call at a time (``pause`` stops a live display meanwhile); otherwise a step that needs
    approval is refused."""
    from .approvals import TerminalApprover, approve_all

    if yes:
        return approve_all
    return TerminalApprover(_stderr(), pause=pause) if interactive else None


async def _cancel_on_signal(executor: Executor) -> None:
    import signal

    import anyio

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            executor.cancel()
            return


@app.command()
def ask(
    goal: Annotated[str, typer.Argument(help="What you want done, in plain words.")],
    model: Annotated[
        str | None,
        typer.Option(help="local, local:PATH.gguf or openai:NAME (default: the model settings)."),
    ] = None,
    show_plan: Annotated[
        bool,
        typer.Option(
            "--show-plan",
            help="Print each plan version as soon as it is made, and its estimate (calls, "
            "tokens, cost, wall time) before it runs (plans are always shown when the "
            "terminal is asked for approvals).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    yes: YesOption = False,
    no_memory: Annotated[
        bool, typer.Option("--no-memory", help="Neither recall nor remember.")
    ] = False,
    backend: BackendOption = None,
    no_routing: Annotated[
        bool,
        typer.Option(
            "--no-routing",
            help="Plan freely: do not route the goal to a plan of the library (agent.routing).",
        ),
    ] = False,
) -> None:
    """Route the goal to a library plan or plan it with a model, run the plan, check it,
    replan if needed, and answer.
    Exit 0 if the goal was achieved, 1 if not, 2 if the command line is invalid, 3 if a
    step waits for approval."""
    import anyio

    from .agent import Agent
    from .journal import Journals, LogJournal
    from .models import make_models
    from .progress import render_answer, render_plan
    from .settings import Settings

    tools = _tools()
    settings = Settings()
    if backend is not None:
        settings.execution.backend = backend.value
    if no_routing:
        settings.agent.routing = False
    try:
        chosen = make_models(settings, model)
    except DagenticError as exc:
        raise _fail(exc.message) from exc
    # Approvals are asked on a terminal; then every plan is shown before its steps ask.
    asks = not yes and not as_json and sys.stdin.isatty() and sys.stderr.isatty()
    approver = _approver(yes, asks)
    on_plan = None
    if show_plan or (asks and settings.agent.approve != "none"):
        console = _stderr() if as_json else _stdout()  # --json keeps standard output JSON
        policy = settings.agent.approve

        def on_plan(plan: dict[str, Any]) -> None:
            render_plan(plan, console, tools, policy=policy)

    memory = None
    if settings.memory.enabled and not no_memory:
        from .memory import open_memory

        # the agent hands its policy the metered memory model of each run
        memory = open_memory(settings, chosen.for_purpose("memory"))
    try:
        from .durable import open_journal

        agent = Agent(
            chosen,
            tools,
            settings=settings,
            journal=Journals(open_journal(settings), LogJournal()),
            approver=approver,
            memory=memory,
            on_plan=on_plan,
            on_run=_estimator(settings, chosen, show_plan, as_json),
        )
    except DagenticError as exc:
        failed = isinstance(exc, JournalError | ClusterError)
        raise _fail(exc.message, FAILED if failed else INVALID) from exc
    result = anyio.run(agent.run, goal)
    if as_json:
        _print_json(result)
    else:
        render_answer(result, _stdout())
    if result.waiting:
        _say_waiting(result, result.agent_run_id)
    _flush_trace(agent.tracing, settings, result.agent_run_id)
    raise typer.Exit(_exit_code(result.status))


def _estimator(settings: Settings, model: Any, show: bool, as_json: bool) -> Any:
    """What estimates each plan an agent runs: shown with --show-plan, kept on the run's
    span when it is traced; None when neither."""
    if not show and settings.tracing.exporter == "none":
        return None
    from .estimate import PlanEstimator

    console = (_stderr() if as_json else _stdout()) if show else None
    return PlanEstimator(settings, model, console)


@app.command()
def estimate(
    plan: Annotated[Path, typer.Argument(help="The YAML plan file.")],
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", metavar="KEY=VALUE", help="A plan input; repeat for more."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON.")] = False,
) -> None:
    """Estimate a plan before running it: tool and model calls, tokens, cost, wall time.

    The wall time (p50 and p90) is the plan's critical path, each step weighted by its
    tool's latency over past runs in the journal (else the tool's typical latency); a
    foreach step by its items over its parallelism. `dagentic trace` shows a run's
    estimate against what it took."""
    from .estimate import estimate_plan, render_estimate
    from .executor import resolve_inputs
    from .graph import load_plan
    from .history import read_history
    from .settings import Settings

    tools = _tools()
    settings = Settings()
    try:
        compiled = load_plan(plan, tools)
        values = resolve_inputs(compiled.plan, _parse_inputs(inputs or []))
    except PlanError as exc:
        raise _report_plan_error(exc) from exc
    try:
        history = read_history(settings)
    except JournalError as exc:
        raise _fail(exc.message, FAILED) from exc
    found = estimate_plan(compiled, values, settings=settings, history=history)
    if as_json:
        _print_json(found.to_dict())
    else:
        render_estimate(found, _stdout())


@app.command()
def validate(
    plans: Annotated[list[Path], typer.Argument(help="Plan files to check.")],
) -> None:
    """Check plan files without running them; problems print as file:line:col: message."""
    from .graph import load_plan

    tools = _tools()
    bad = 0
    for path in plans:
        try:
            compiled = load_plan(path, tools)
        except PlanError as exc:
            bad += 1
            for problem in exc.problems:
                _stderr().print(safe_markup(str(problem)), highlight=False)
            continue
        _stdout().print(
            f"{safe_markup(str(path))}: ok ({_count(len(compiled.steps), 'step')})",
            highlight=False,
        )
    if bad:
        raise typer.Exit(INVALID)


@app.command("tools")
def list_tools(
    as_json: Annotated[bool, typer.Option("--json", help="Print tool specs as JSON.")] = False,
) -> None:
    """List the installed tools, their arguments and the plugin each came from."""
    tools = _tools()
    if as_json:
        _print_json([t.spec() for t in tools])
        return
    table = Table(title=_count(len(tools), "tool"), title_justify="left")
    for column in ("tool", "plugin", "effects", "arguments", "description"):
        table.add_column(column, overflow="fold")
    for t in tools:
        schema = t.args_schema()
        required = set(schema.get("required", []))
        args = ", ".join(
            f"{name}{'' if name in required else '?'}: {_type_of(spec)}"
            for name, spec in schema.get("properties", {}).items()
        )
        # Descriptions may come from outside (an MCP server's tool list): shown as text.
        cells = (t.name, t.plugin or "", t.side_effects, args, t.description.splitlines()[0])
        table.add_row(*(Text(safe_text(str(c), one_line=True, limit=300)) for c in cells))
    _stdout().print(table)


def _type_of(schema: dict[str, Any]) -> str:
    if "type" in schema:
        return str(schema["type"])
    if "anyOf" in schema:
        return "|".join(_type_of(s) for s in schema["anyOf"])
    if "enum" in schema:
        return "|".join(map(str, schema["enum"]))
    return "any"


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    dot = "dot"
    png = "png"


@app.command()
def graph(
    plan: Annotated[Path, typer.Argument(help="The YAML plan file.")],
    format: Annotated[GraphFormat, typer.Option("--format", "-f")] = GraphFormat.mermaid,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (required for png).")
    ] = None,
) -> None:
    """Draw a plan's DAG as Mermaid, Graphviz DOT, or a PNG image (needs Graphviz)."""
    import shutil
    import subprocess

    from .graph import load_plan, to_dot, to_mermaid

    try:
        compiled = load_plan(plan, _tools())
    except PlanError as exc:
        raise _report_plan_error(exc) from exc
    if format is GraphFormat.png:
        if output is None:
            raise _fail("--format png needs --output FILE.png")
        dot = shutil.which("dot")
        if dot is None:
            raise _fail(
                "--format png needs Graphviz's `dot` program (Debian: apt-get install "
                "graphviz); --format dot prints the graph as text instead"
            )
        subprocess.run(
            [dot, "-Tpng", "-o", str(output)], input=to_dot(compiled), text=True, check=True
        )
        return
    text = to_mermaid(compiled) if format is GraphFormat.mermaid else to_dot(compiled)
    if output is None:  # names and ids come from the plan file: shown, never performed
        print(safe_text(text), end="")
    else:
        output.write_text(text, encoding="utf-8")


@app.command()
def trace(
    run_id: Annotated[
        str,
        typer.Argument(
            help="A run id (or its start), as `dagentic run` and `dagentic ask` print it."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the analysis as JSON.")] = False,
) -> None:
    """Show a traced run: a timeline of its steps, the critical path, failures and usage."""
    from . import traceview
    from .runfiles import find_run, read_spans
    from .settings import Settings

    settings = Settings()
    try:
        path = find_run(settings.runs_dir, run_id)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if path is None:
        exporter = settings.tracing.exporter
        now = "" if exporter == "jsonl" else f"; it is '{exporter}' now"
        raise _fail(
            f"no trace of run '{run_id}' in {settings.runs_dir}: runs are traced "
            f"there when tracing.exporter is 'jsonl' (the default){now}"
        )
    spans = list(read_spans(path))
    if not spans:
        raise _fail(f"{path} holds no spans")
    analysis = traceview.analyse(spans, run_id)
    if as_json:
        _print_json({"file": str(path), **analysis})
        return
    traceview.render_trace(analysis, _stdout())


@app.command()
def report(
    since: Annotated[
        str | None,
        typer.Option(
            help="Only runs started since: a duration (30m, 1h, 2d) or an ISO date "
            "(2026-01-31, 2026-01-31T09:00)."
        ),
    ] = None,
    png: Annotated[
        Path | None,
        typer.Option("--png", metavar="FILE", help="Also draw the report as a PNG chart."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Totals over the traced runs: runs by status, failure modes, step latency per tool."""
    from . import traceview
    from .settings import Settings

    try:
        after = traceview.parse_since(since) if since is not None else None
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if png is not None:
        try:
            import matplotlib  # noqa: F401 - only to say early that it is missing
        except ImportError:
            raise _fail("--png needs matplotlib: pip install 'dagentic[charts]'") from None
    settings = Settings()
    data = traceview.report(settings.runs_dir, after)
    data["feedback"] = _feedback_report(settings, after)
    if png is not None:
        try:
            traceview.write_png(data, png)
        except OSError as exc:
            raise _fail(f"cannot write {png}: {exc}") from exc
    if as_json:
        _print_json(data)
    else:
        traceview.render_report(data, _stdout())
    if png is not None:
        _stderr().print(f"[dim]chart: {safe_markup(str(png))}[/dim]", highlight=False)


def _feedback_report(settings: Settings, after: Any) -> dict[str, Any] | None:
    """Feedback counts from the durable journal (None when it is off or unreadable)."""
    from . import traceview
    from .durable import open_journal

    try:
        journal = open_journal(settings)
        rows = journal.store.feedback() if journal is not None else None
    except JournalError:
        return None
    return traceview.feedback_counts(rows, after) if rows is not None else None


sandbox_app = typer.Typer(help="Run code in the sandbox.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


class BackendChoice(StrEnum):
    auto = "auto"
    docker = "docker"
    process = "process"


@sandbox_app.command("run")
def sandbox_run(
    file: Annotated[Path, typer.Argument(help="A Python file to run.")],
    backend: Annotated[
        BackendChoice | None,
        typer.Option(
            help="docker, process (bubblewrap) or auto (default: the sandbox.backend setting)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the SandboxResult.")] = False,
    wall_time: Annotated[float | None, typer.Option(help="Seconds of wall time.")] = None,
    file_contents: Annotated[
        bool, typer.Option("--file-contents", help="Include produced files' contents in --json.")
    ] = False,
) -> None:
    """Run FILE.py in the sandbox and print what it printed and why it ended. Exit 0 if
    the code succeeded, 1 if not, 2 if the sandbox cannot run here."""
    import anyio

    from .isolation import SandboxUnavailableError
    from .plugin_manager import close_sandboxes, open_sandbox
    from .settings import Settings

    try:
        code = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {file}: {exc}") from exc
    settings = Settings()
    # One run and out: warm containers would only be started to be thrown away.
    settings.sandbox.pool_size = 0
    limits = settings.sandbox.limits
    if wall_time is not None:
        limits = limits.model_copy(update={"wall_time": wall_time})

    async def main() -> SandboxResult:
        try:
            sandbox = await open_sandbox(settings, backend.value if backend else None)
            return await sandbox.run(code, limits=limits, file_contents=file_contents)
        finally:
            await close_sandboxes()

    try:
        result = anyio.run(main)
    except SandboxUnavailableError as exc:
        raise _fail(exc.message) from exc
    if as_json:
        _print_json(result)
    else:
        # What the code printed, with what a terminal would act on shown instead (--json
        # has the exact text).
        sys.stdout.write(safe_text(result.stdout))
        sys.stderr.write(safe_text(result.stderr))
        notes = [
            f"exit_reason={result.exit_reason}",
            f"exit_code={result.exit_code}",
            f"backend={result.backend} ({result.isolation})",
            f"{result.duration * 1000:.0f} ms",
        ]
        if result.stdout_truncated or result.stderr_truncated:
            notes.append("output truncated")
        if result.result is not None:
            notes.append(f"result={inline_value(result.result, limit=200)}")
        if result.detail:
            notes.append(result.detail)
        _stderr().print("[dim]sandbox:[/dim] " + safe_markup("; ".join(notes)), highlight=False)
    raise typer.Exit(0 if result.ok else FAILED)


@sandbox_app.command("prune")
def sandbox_prune() -> None:
    """Remove what dagentic processes that died (kill -9, a crash) left behind: sandbox
    containers and cgroups whose owner is gone. Those of running processes are kept."""
    import anyio

    from .plugin_manager import load_sandbox_backends
    from .settings import Settings

    settings = Settings()

    async def main() -> tuple[list[str], list[str]]:
        removed, notes = [], []
        for backend in load_sandbox_backends().values():
            try:
                removed += await backend.prune(settings) if backend.prune else []
            except DagenticError as exc:
                notes.append(f"{backend.name}: {exc.message}")
        return removed, notes

    removed, notes = anyio.run(main)
    for line in removed:
        print(safe_text(f"removed {line}", one_line=True))
    for note in [*notes, f"{len(removed)} removed"]:
        _stderr().print("[dim]sandbox prune:[/dim] " + safe_markup(note), highlight=False)


memory_app = typer.Typer(help="Look at and prune long-term memory.", no_args_is_help=True)
app.add_typer(memory_app, name="memory")
app.add_typer(config_app, name="config")
app.add_typer(plugin_app, name="plugin")
app.add_typer(runs_app, name="runs")
app.add_typer(cache_app, name="cache")
app.add_typer(plans_app, name="plans")
app.command("feedback")(feedback)
app.command("approvals")(approvals)
app.command("approve")(approve)
app.command("deny")(deny)
app.command("serve")(serve_command)


@memory_app.command("list")
def memory_list(
    limit: Annotated[int, typer.Option(min=1, help="Items to show, newest first.")] = 50,
    provenance: Annotated[
        list[str] | None,
        typer.Option(help="Only items whose provenance starts so (user, agent, untrusted:...)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the items as JSON.")] = False,
) -> None:
    """List remembered items with where each came from."""
    import anyio

    from .memory import open_memory
    from .settings import Settings

    memory = open_memory(Settings())
    try:
        items = anyio.run(lambda: memory.store.list(limit=limit, provenance=provenance))
    except DagenticError as exc:
        raise _fail(exc.message) from exc
    if as_json:
        _print_json([i.to_dict() for i in items])
        return
    table = Table("id", "provenance", "updated", "importance", "text")
    for item in items:
        table.add_row(
            Text(safe_text(item.id, one_line=True)),
            Text(safe_text(item.provenance, one_line=True)),
            Text(safe_text(item.to_dict()["updated_at"] or "", one_line=True)),
            f"{item.importance:.2f}",
            Text(safe_text(item.text, one_line=True, limit=120)),
        )
    _stdout().print(table)
    _stdout().print(
        Text(safe_text(f"{_count(len(items), 'item')} in {memory.store.path}", one_line=True))
    )


@memory_app.command("forget")
def memory_forget(
    ids: Annotated[list[str] | None, typer.Argument(help="Ids of the items to forget.")] = None,
    provenance: Annotated[
        list[str] | None, typer.Option(help="Forget every item whose provenance starts so.")
    ] = None,
    expired: Annotated[bool, typer.Option(help="Forget items past their TTL.")] = False,
) -> None:
    """Delete items by id or by filter."""
    import anyio

    from .memory import open_memory
    from .settings import Settings

    memory = open_memory(Settings())
    try:
        gone = anyio.run(lambda: memory.store.delete(ids, provenance=provenance, expired=expired))
    except DagenticError as exc:
        raise _fail(exc.message) from exc
    print(f"forgot {_count(gone, 'item')}")


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file.")
    ] = None,
) -> None:
    """Print (or write) the JSON schema of plan files, for editors and model planners."""
    from .plan import plan_json_schema

    text = plan_json_schema()
    if output is None:
        print(text, end="")
    else:
        output.write_text(text, encoding="utf-8")


def _command_names() -> set[str]:
    """The names of the commands and command groups the app has now."""
    commands = {
        c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands
    }
    groups = {
        g.name or (g.typer_instance.info.name if g.typer_instance else None)
        for g in app.registered_groups
    }
    return commands | {name for name in groups if name}


class _StandIn(typer.Typer):
    """A plugin's command group as its source declares it (name, help), with no commands:
    what ``dagentic --help`` lists without importing the plugin (:func:`load_commands`)."""


# The plugins' command groups added to the app, by name (stand-ins included).
_PLUGIN_GROUPS: dict[str, typer.Typer] = {}


def load_commands() -> dict[str, typer.Typer]:
    """The plugins' command groups by name, to list them (``dagentic --help``). Those that
    the installed plugins declare plainly are read from their source, no plugin imported
    (:func:`~dagentic._plugin_commands.declared_commands`), and come as stand-ins; if one
    cannot be read so, every plugin is loaded for its groups, as running one does."""
    from ._plugin_commands import declared_commands

    declared = declared_commands()
    if declared is None:
        return _loaded_commands()
    return {name: _StandIn(**options) for name, options in declared.items()}


def _loaded_commands() -> dict[str, typer.Typer]:
    """Every command group of the installed plugins, each plugin loaded."""
    from .plugin_manager import load_commands as load_plugin_commands

    return load_plugin_commands()


def add_plugin_commands(groups: dict[str, typer.Typer] | None = None) -> None:
    """Add the command groups that plugins register (e.g. ``dagentic index``), once:
    ``groups`` (default: every plugin's, the plugins loaded). A stand-in (from
    :func:`load_commands`) gives way to the plugin's own group when that is added."""
    if groups is None:
        groups = _loaded_commands()
    own = _command_names() - set(_PLUGIN_GROUPS)
    for name, group in groups.items():
        added = _PLUGIN_GROUPS.get(name)
        if added is group or (added is not None and isinstance(group, _StandIn)):
            continue
        if name in own or (added is not None and not isinstance(added, _StandIn)):
            raise PluginError(
                f"a plugin registers command {name!r}, which dagentic has "
                "already; rename the plugin's command group",
                command=name,
            )
        if added is not None:
            app.registered_groups = [
                g for g in app.registered_groups if g.typer_instance is not added
            ]
        app.add_typer(group, name=name)
        _PLUGIN_GROUPS[name] = group


def _plugin_commands_wanted(args: list[str]) -> Literal["none", "listed", "loaded"]:
    """What the command line needs of the plugins' command groups: ``none`` when it runs
    one of dagentic's own commands (which loads the plugins it needs, e.g. for their
    tools); ``listed`` for dagentic's own help (or a usage error before any command);
    ``loaded`` to run a plugin's command (or to say that a command does not exist)."""
    for arg in args:
        if arg == "--help":
            return "listed"
        if not arg.startswith("-"):
            return "none" if arg in _command_names() else "loaded"
    return "listed"


# What typer's help formatter and structlog's console renderer import from rich for what
# dagentic's command line never shows: Markdown help text (rich_markup_mode="markdown";
# with markdown-it and pygments) and rich tracebacks (typer's pretty exceptions are off;
# structlog's renderer gets exceptions already rendered by display.safe_log_event).
_RARELY_USED = {"rich.markdown": "Markdown", "rich.traceback": "Traceback"}


def _import_sparing_rich(name: str) -> None:
    """Import module ``name`` without loading the modules of ``_RARELY_USED``: while it
    imports, they are stand-ins holding only the named class, which imports the real one
    when first used (the real modules were a third of what ``dagentic --help`` took). If
    ``name`` wants more of them, it is left to be imported as usual."""
    if name in sys.modules:
        return
    import types
    from importlib import import_module

    stand_ins = {}
    for module, attribute in _RARELY_USED.items():
        if module not in sys.modules:
            stand_ins[module] = types.ModuleType(module)
            setattr(stand_ins[module], attribute, _deferred_class(module, attribute))
    sys.modules.update(stand_ins)
    try:
        import_module(name)
    except ImportError:
        pass
    finally:
        for module, stand_in in stand_ins.items():
            if sys.modules.get(module) is stand_in:
                del sys.modules[module]


def _deferred_class(module: str, name: str) -> type:
    """A stand-in for class ``name`` of ``module`` that imports it when first used:
    calling it, its attributes and isinstance() are the real class's."""
    from importlib import import_module

    def real() -> Any:
        return getattr(import_module(module), name)

    class Deferred(type):
        def __call__(cls, *args: Any, **kwargs: Any) -> Any:
            return real()(*args, **kwargs)

        def __getattr__(cls, attr: str) -> Any:
            return getattr(real(), attr)

        def __instancecheck__(cls, instance: Any) -> bool:
            return isinstance(instance, real())

    return Deferred(name, (), {"__module__": module, "__qualname__": name})


def _usage_error(error: typer.TyperException) -> int:
    """Say what was wrong with the command line, as click would, but with what was typed
    (an option, a file name) shown escaped: it may hold what a terminal acts on."""
    console = _stderr()
    ctx = getattr(error, "ctx", None)
    if ctx is not None:
        console.print(Text(safe_text(ctx.get_usage())))
        if ctx.command.get_help_option(ctx) is not None:
            hint = f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help."
            console.print(Text(safe_text(hint)))
    console.print(f"[red]error:[/red] {safe_markup(error.format_message())}", highlight=False)
    return error.exit_code


def main() -> None:
    try:
        args = sys.argv[1:]
        wanted = _plugin_commands_wanted(args)
        if (wanted == "listed" or "--help" in args) and typer.core.HAS_RICH:
            _import_sparing_rich("typer.rich_utils")
        if wanted == "listed":
            add_plugin_commands(load_commands())
        elif wanted == "loaded":
            add_plugin_commands()
    except DagenticError as exc:
        _stderr().print(f"[red]error:[/red] {safe_markup(exc.message)}", highlight=False)
        sys.exit(INVALID)
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # typer's click: a usage error
        sys.exit(_usage_error(exc))
    except typer.Abort:
        _stderr().print("[red]aborted[/red]")
        sys.exit(FAILED)
    sys.exit(code if isinstance(code, int) else 0)
