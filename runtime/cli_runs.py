"""The durable run journal at the command line: ``dagentic runs`` (list, ``show``,
``prune``), ``dagentic approvals`` (what waits for a person, with the arguments to judge),
and ``dagentic approve`` / ``dagentic deny`` (the decision, with who, when and why, kept in
the journal; ``dagentic resume`` then goes on, from any process or machine that shares it).

Everything printed that came from the journal (plan names, step ids, arguments, reasons)
is shown as data (:mod:`.display`): never taken as Rich markup, never performed by the
terminal. What a command needs loads inside it: ``dagentic --help`` loads typer only.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from .durable import ApprovalRecord, RunRecord, RunStore
    from .settings import Settings
    from .tools import ToolRegistry

__all__ = [
    "approvals",
    "approve",
    "deny",
    "find_run",
    "open_run_store",
    "runs_app",
]

runs_app = typer.Typer(
    name="runs",
    help="List the runs of the durable journal, show one, prune old ones.\n\n"
    "Without a command: the runs, newest first, each with its id, plan, status "
    "(interrupted: still running in the journal, but its process is gone; `dagentic "
    "resume` goes on), start (local time), duration, and the calls that wait for a "
    "decision (`dagentic approvals`).",
    invoke_without_command=True,
    no_args_is_help=False,
)

DAY = 86400.0
STYLE = {
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "waiting": "bold yellow",
    "running": "cyan",
    "skipped": "dim",
    "pending": "dim",
}
_SHOWN = 300  # characters of one value in a table cell (--json prints all)

# What a request for a decision was asked for, in words.
_ASKED = {
    "approval": "approval: the step requires it",
    "rerun": "rerun: it was running when the run stopped, and may not be safe to run twice",
}


class RunState(StrEnum):
    running = "running"
    interrupted = "interrupted"
    waiting = "waiting"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


# -- the command line's ways (as dagentic.cli has them; that module imports this one) -----

INVALID = 2  # the command line is invalid
FAILED = 1  # the journal cannot be used


def _stdout() -> Console:
    from rich.console import Console

    return Console(soft_wrap=True)


def _fail(message: str, code: int = INVALID) -> typer.Exit:
    from rich.console import Console

    from .display import safe_markup

    Console(stderr=True, soft_wrap=True).print(
        f"[red]error:[/red] {safe_markup(message)}", highlight=False
    )
    return typer.Exit(code)


def _print_json(value: Any) -> None:
    """JSON in printable ASCII: nothing a terminal acts on (see display.safe_json)."""
    from .display import safe_json

    print(safe_json(value))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _tools() -> ToolRegistry:
    """The installed tools (to compile a stored plan), with the settings checked."""
    from .errors import DagenticError
    from .plugin_manager import load_settings, load_tools, make_plugin_manager

    try:
        plugins = make_plugin_manager()
        load_settings(plugin_manager=plugins)
        return load_tools(plugin_manager=plugins)
    except DagenticError as exc:
        raise _fail(exc.message) from exc


# -- shared with `dagentic resume` ---------------------------------------------------------


def open_run_store(settings: Settings | None = None) -> RunStore:
    """The store of the durable journal the settings name; exits 1 if it is off or cannot
    be opened."""
    from .durable import open_journal
    from .errors import JournalError
    from .settings import Settings

    settings = settings or Settings()
    try:
        journal = open_journal(settings)
    except JournalError as exc:
        raise _fail(exc.message, FAILED) from exc
    if journal is None:
        raise _fail(
            "the run journal is off (journal.enabled is false): no run is kept to list, "
            "decide or resume",
            FAILED,
        )
    return journal.store


def find_run(store: RunStore, given: str) -> RunRecord:
    """The run whose id is ``given`` or starts with it; exits 2 when there is none or
    more than one."""

    record = store.run(given) if given else None
    if record is not None:
        return record
    found = store.find_runs(given) if given else []
    if not found:
        raise _fail(f"there is no run '{given}' in the journal {store.label}")
    if len(found) > 1:
        many = f"{len(found)}{' or more' if len(found) >= 20 else ''}"
        raise _fail(f"'{given}' starts the ids of {many} runs: {', '.join(found)}; give more of it")
    record = store.run(found[0])
    if record is None:  # pruned meanwhile
        raise _fail(f"there is no run '{given}' in the journal {store.label}")
    return record


# -- formatting ----------------------------------------------------------------------------


def _local(at: float | None) -> str:
    """A time of the journal as local time, to the second."""
    from datetime import datetime

    return "" if at is None else datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def _iso(at: float | None) -> str | None:
    """A time of the journal in --json: ISO 8601, UTC."""
    from datetime import UTC, datetime

    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def duration(seconds: float | None) -> str:
    """``0.42s``, ``12.3s``, ``4m 05s``, ``2h 03m``, ``3d 04h``."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def _run_seconds(record: RunRecord) -> float:
    """From the run's start to its (latest) end, or to now while it runs."""
    end = record.finished_at if record.finished_at is not None else time.time()
    return max(end - record.created_at, 0.0)


def _call(a: ApprovalRecord) -> str:
    """A waiting call as the commands name it: ``send``, or ``send[2]`` for an item."""
    return a.step_id if a.item is None else f"{a.step_id}[{a.item}]"


def _what(record: RunRecord) -> str:
    """A run's plan, or what an agent run was asked."""
    if record.kind == "plan":
        return record.plan_name
    return f"{record.kind}: {record.goal or record.plan_name}"


def _cell(value: Any) -> Any:
    from rich.text import Text

    from .display import safe_text

    return Text(safe_text(str(value), one_line=True, limit=_SHOWN))


def _say(console: Console, text: str, style: str = "") -> None:
    """One line of plain text (escaped; never markup)."""
    from rich.text import Text

    from .display import safe_text

    console.print(Text(safe_text(text), style=style), highlight=False)


def _approval_json(a: ApprovalRecord) -> dict[str, Any]:
    return {
        "run_id": a.run_id,
        "plan": a.plan_name,
        "step": a.step_id,
        "item": a.item,
        "tool": a.tool,
        "side_effects": a.side_effects,
        "asked_for": a.reason_asked,
        "requested_at": _iso(a.requested_at),
        "args": a.args,
        "decision": a.decision,
        "decided_by": a.decided_by,
        "decided_at": _iso(a.decided_at),
        "reason": a.reason,
    }


def _waits(store: RunStore) -> dict[str, list[str]]:
    """The calls that wait for a decision, by run."""
    waiting: dict[str, list[str]] = {}
    for a in store.approvals():
        waiting.setdefault(a.run_id, []).append(_call(a))
    return waiting


# -- dagentic runs ---------------------------------------------------------------------------


@runs_app.callback()
def runs_list(
    ctx: typer.Context,
    status: Annotated[
        list[RunState] | None,
        typer.Option("--status", "-s", help="Only runs in this status; repeat for more."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only runs started since: a duration (30m, 3h, 1d) or an ISO date "
            "(2026-01-31, 2026-01-31T09:00)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Runs to show at most, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """List the runs of the durable journal, newest first (see the group's help)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from .traceview import parse_since

    try:
        after = parse_since(since).timestamp() if since is not None else None
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    store = open_run_store()
    wanted = {s.value for s in status or ()}
    stored = {"running" if s == "interrupted" else s for s in wanted}
    # running and interrupted are one status in the journal: told apart here, after the
    # query, so that it fetches more when only one of them is asked for
    exact = not ({"running", "interrupted"} & wanted) or {"running", "interrupted"} <= wanted
    records = store.runs(status=sorted(stored), since=after, limit=limit if exact else 10_000)
    if wanted:
        records = [r for r in records if r.shown_status in wanted]
    records = records[:limit]
    waits = _waits(store)
    if as_json:
        _print_json(
            [
                {
                    "run_id": r.run_id,
                    "kind": r.kind,
                    "parent_id": r.parent_id,
                    "plan": r.plan_name,
                    "plan_file": r.plan_file,
                    "goal": r.goal,
                    "status": r.shown_status,
                    "started_at": _iso(r.created_at),
                    "finished_at": _iso(r.finished_at),
                    "duration": round(_run_seconds(r), 3),
                    "waits": waits.get(r.run_id, []),
                }
                for r in records
            ]
        )
        return
    console = _stdout()
    if not records:
        _say(
            console,
            f"no runs in the journal {store.label}" + (" that match" if wanted or since else ""),
        )
        return
    table = Table(title=_count(len(records), "run"), title_justify="left")
    for column in ("id", "plan", "status", "started", "duration", "waits"):
        table.add_column(column, overflow="fold")
    for r in records:
        shown = r.shown_status
        waiting = ", ".join(waits.get(r.run_id, []))
        if not waiting and shown == "waiting":
            waiting = "(decided: resume it)"
        table.add_row(
            _cell(r.run_id[:12]),
            _cell(_what(r)),
            _cell(shown),
            _cell(_local(r.created_at)),
            _cell(duration(_run_seconds(r))),
            _cell(waiting),
        )
    console.print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="A run id, or its start.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Print what the journal holds of one run, as a table or --json.

    Its record, every step's stored state, its outputs and error, and the approvals asked
    in it with their decisions (who, when, why)."""

    store = open_run_store()
    record = find_run(store, run_id)
    tools = _tools()
    steps = _stored_steps(store, record, tools)
    asked = store.approvals(record.run_id, waiting=False)
    children = store.runs(parent_id=record.run_id)  # an agent's plan runs
    if as_json:
        _print_json(
            {
                "run": {
                    "run_id": record.run_id,
                    "kind": record.kind,
                    "parent_id": record.parent_id,
                    "plan": record.plan_name,
                    "plan_file": record.plan_file,
                    "plan_hash": record.plan_hash,
                    "goal": record.goal,
                    "status": record.shown_status,
                    "inputs": record.inputs,
                    "started_at": _iso(record.created_at),
                    "updated_at": _iso(record.updated_at),
                    "finished_at": _iso(record.finished_at),
                    "duration": round(_run_seconds(record), 3),
                    "owner": record.owner,
                    "lease_until": _iso(record.lease_until),
                },
                "steps": steps,
                "outputs": record.outputs,
                "error": record.error,
                "approvals": [_approval_json(a) for a in asked],
                "runs": [
                    {"run_id": c.run_id, "plan": c.plan_name, "status": c.shown_status}
                    for c in reversed(children)
                ],
                "plan": record.plan,
            }
        )
        return
    _render_run(_stdout(), record, steps, asked)
    if children:
        console = _stdout()
        _say(console, "plan runs", "bold")
        for c in reversed(children):  # oldest first
            _say(console, f"  {c.run_id}  {c.shown_status}  (plan {c.plan_name})")


def _stored_steps(store: RunStore, record: RunRecord, tools: ToolRegistry) -> dict[str, Any]:
    """Every step's state as the journal has it (JSON-ready), in plan order: as
    :class:`~dagentic.StepResult` when the stored plan compiles with the installed tools,
    else as the events tell (a tool no longer installed)."""
    from .durable.resume import fold, step_results
    from .errors import PlanError
    from .graph import compile_plan

    folded = fold(store.events(record.run_id))
    try:
        compiled = compile_plan(record.plan, tools, judge=True)
    except PlanError:
        compiled = None
    if compiled is not None:
        results = step_results(folded, compiled)
        return {sid: r.model_dump(mode="json") for sid, r in results.items()}
    return {
        sid: {
            "id": sid,
            "status": s.status if s.ended else "pending",
            "output": s.output if s.status == "succeeded" else None,
            "error": s.error.model_dump(mode="json") if s.error else None,
            "attempts": s.attempts,
            "started_at": _iso(s.started_at),
            "finished_at": _iso(s.finished_at) if s.ended else None,
            "duration": s.finished_at - s.started_at
            if s.ended and s.started_at is not None and s.finished_at is not None
            else None,
        }
        for sid, s in folded.items()
    }


def _render_run(
    console: Console, record: RunRecord, steps: dict[str, Any], asked: list[ApprovalRecord]
) -> None:
    from rich.table import Table
    from rich.text import Text

    from .display import indented, inline_value, render_value, safe_text

    shown = record.shown_status
    what = f"plan {record.plan_name}" if record.kind == "plan" else record.kind
    _say(console, f"run {record.run_id} ({what})", "bold")
    facts = [
        ("status", shown),
        ("started", _local(record.created_at)),
        ("ended", _local(record.finished_at)),
        ("duration", duration(_run_seconds(record))),
        ("goal", record.goal or ""),
        ("plan file", record.plan_file or ""),
        ("inputs", inline_value(record.inputs, limit=_SHOWN) if record.inputs else ""),
        ("parent", record.parent_id or ""),
        ("owner", record.owner if record.status == "running" else ""),
    ]
    for label, value in facts:
        if value:
            _say(console, f"  {label + ':':<10} {value}")
    table = Table(title="steps", title_justify="left")
    for column in ("step", "tool", "status", "tries", "time", "failure"):
        table.add_column(column, overflow="fold")
    for sid, step in steps.items():  # a step's tool is None for a check, absent if unknown
        error = step.get("error")
        status = step["status"]
        seconds = step.get("duration")
        table.add_row(
            _cell(sid),
            _cell(step.get("tool") or ("check" if "tool" in step else "")),
            Text(safe_text(status, one_line=True), style=STYLE.get(status, "")),
            str(step.get("attempts") or ""),
            f"{seconds:.2f}s" if seconds is not None else "",
            Text(
                safe_text(f"{error['failure_mode']}: {error['message']}", limit=500),
                style="red",
            )
            if error
            else "",
        )
    if steps:
        console.print(table)
    if record.outputs:
        console.print(Text("outputs", style="bold"))
        for key, value in record.outputs.items():
            console.print(Text(f"  {safe_text(str(key), one_line=True)}:"))
            console.print(indented(render_value(value), 4))
    if record.error:
        error = record.error
        message = f"{error.get('failure_mode')}: {error.get('message')}"
        console.print(Text(safe_text(message, limit=500), style="red"))
    if asked:
        table = Table(title="approvals", title_justify="left")
        for column in ("step", "tool", "asked for", "requested", "decision", "by", "at", "reason"):
            table.add_column(column, overflow="fold")
        for a in asked:
            table.add_row(
                _cell(_call(a)),
                _cell(a.tool),
                _cell(a.reason_asked),
                _cell(_local(a.requested_at)),
                _cell(a.decision or "waiting"),
                _cell(a.decided_by or ""),
                _cell(_local(a.decided_at)),
                _cell(a.reason or ""),
            )
        console.print(table)


@runs_app.command("prune")
def runs_prune(
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            metavar="DAYS",
            min=0,
            help="Remove runs that finished more than DAYS ago (default: journal.keep_days).",
        ),
    ] = None,
) -> None:
    """Remove finished runs older than journal.keep_days (or --older-than DAYS).

    Runs that succeeded, failed or were cancelled go, with their events and approvals;
    runs that wait or could be resumed are kept."""
    from .settings import Settings

    settings = Settings()
    days = older_than if older_than is not None else settings.journal.keep_days
    console = _stdout()
    if older_than is None and days == 0:
        _say(
            console,
            "journal.keep_days is 0: every run is kept, none was removed "
            "(--older-than DAYS removes older ones)",
        )
        return
    store = open_run_store(settings)
    removed = store.prune(time.time() - days * DAY)
    _say(
        console,
        f"removed {_count(len(removed), 'run')} that finished more than {days:g} days ago "
        f"from {store.label}",
    )


# -- dagentic approvals, approve, deny ------------------------------------------------------


def approvals(
    as_json: Annotated[bool, typer.Option("--json", help="Print the requests as JSON.")] = False,
) -> None:
    """List every call that waits for a person's decision, with the arguments to judge.

    Each call shows its run, plan, step (and foreach item), tool, side effects, why it
    asks (the step requires approval, or it was running when its run stopped and may not
    be safe to run twice), when it asked, and its resolved arguments. Decide with
    `dagentic approve` or `dagentic deny`, then go on with `dagentic resume`."""
    from rich.text import Text

    from .display import safe_json

    store = open_run_store()
    waiting = store.approvals()
    if as_json:
        _print_json([_approval_json(a) for a in waiting])
        return
    console = _stdout()
    if not waiting:
        _say(console, "nothing waits for a decision")
        return
    verb = "waits" if len(waiting) == 1 else "wait"
    _say(console, f"{_count(len(waiting), 'call')} {verb} for a decision", "bold")
    for a in waiting:
        item = "" if a.item is None else f", item {a.item} (numbered from 0)"
        effects = f"side effects: {a.side_effects}" if a.side_effects else "side effects unknown"
        console.print()
        _say(console, f"run {a.run_id} (plan {a.plan_name})", "bold")
        _say(console, f"  step {a.step_id}{item}: {a.tool} ({effects})")
        _say(console, f"  asked for {_ASKED.get(a.reason_asked, a.reason_asked)}")
        _say(console, f"  requested {_local(a.requested_at)}")
        _say(console, "  arguments:")
        args = "\n".join("    " + line for line in safe_json(a.args).splitlines())
        console.print(Text(args), highlight=False)
        flag = "" if a.item is None else f" --item {a.item}"
        _say(
            console,
            f"  decide: dagentic approve {a.run_id} {a.step_id}{flag}"
            f"  |  dagentic deny {a.run_id} {a.step_id}{flag} --reason TEXT",
            "dim",
        )


ItemOption = Annotated[
    int | None,
    typer.Option(
        "--item", min=0, help="Only this foreach item (from 0; default: every waiting item)."
    ),
]
ByOption = Annotated[
    str | None, typer.Option("--by", help="Who decides (default: the user of this session).")
]
RunArgument = Annotated[str, typer.Argument(help="A run id, or its start.")]
StepArgument = Annotated[str, typer.Argument(help="The id of the step that waits.")]


def approve(
    run_id: RunArgument,
    step: StepArgument,
    item: ItemOption = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, kept with the decision.")
    ] = None,
    by: ByOption = None,
) -> None:
    """Approve a waiting call; `dagentic resume RUN_ID` then runs it.

    The decision is kept in the journal with who made it (--by, default: the user of this
    session), when, and why (--reason)."""
    _decide(run_id, step, item, approved=True, reason=reason, by=by)


def deny(
    run_id: RunArgument,
    step: StepArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why (required), kept and shown.")],
    item: ItemOption = None,
    by: ByOption = None,
) -> None:
    """Deny a waiting call; `dagentic resume RUN_ID` then fails its step (policy_blocked).

    The decision is kept in the journal with who made it (--by, default: the user of this
    session), when, and why (--reason, required, shown in the step's error)."""
    _decide(run_id, step, item, approved=False, reason=reason, by=by)


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name, no password entry (a bare container)
        return "unknown"


def _decide(
    run_id: str, step: str, item: int | None, *, approved: bool, reason: str | None, by: str | None
) -> None:

    store = open_run_store()
    record = find_run(store, run_id)
    rid = record.run_id
    who = by if by is not None and by.strip() else _user()
    decided = store.decide(rid, step, item, approved=approved, by=who, reason=reason)
    call = f"step '{step}'" + ("" if item is None else f" item {item}")
    if not decided:
        waiting = [_call(a) for a in store.approvals(rid)]
        if waiting:
            raise _fail(
                f"nothing of {call} waits for a decision in run {rid}; what waits there: "
                f"{', '.join(waiting)}"
            )
        raise _fail(f"nothing waits for a decision in run {rid} (it is {record.shown_status})")
    console = _stdout()
    why = f": {reason}" if reason else ""
    verb = "approved" if approved else "denied"
    _say(console, f"{verb} {call} of run {rid} ({_count(decided, 'call')}) as {who}{why}")
    left = [_call(a) for a in store.approvals(rid)]
    if left:
        _say(console, f"still waiting in this run: {', '.join(left)}; decide them too, then:")
    parent = store.run(record.parent_id) if record.parent_id is not None else None
    resumed = parent.run_id if parent is not None and parent.kind == "agent" else rid
    _say(console, f"next: dagentic resume {resumed}")
