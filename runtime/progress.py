"""Terminal rendering of runs: a live table while a plan runs, and a summary after; for
``dagentic ask``, each plan before it runs and the answer after.

Everything a step, a tool or a plan file wrote goes through :mod:`dagentic.display`
before it reaches the terminal.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from .display import indented, inline_value, render_value, safe_text
from .graph import CompiledPlan, compile_plan
from .journal import StepEvent
from .plan import Plan, Step
from .result import RunResult
from .tools import ToolRegistry

__all__ = ["LiveProgress", "render_answer", "render_plan", "render_result", "tries"]

NOTE_CHARS = 120  # of an error message in the live table
FAILURE_CHARS = 500  # of an error message in the summary table
ANSWER_CHARS = 20_000  # of an answer or an agent's error message
PLAN_CHARS = 1500  # of one step's arguments in a shown plan
_STYLE = {
    "succeeded": "green",
    "failed": "bold red",
    "skipped": "dim",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "blue",
    "pending": "dim",
    "waiting": "bold magenta",
}


def tries(step: Step | None, attempts: int, output: Any = None) -> str:
    """The ``tries`` column: how many attempts a step needed. The executor counts the tool
    calls of a ``foreach`` step over all its items; the column shows what one item
    needed instead: ``1`` when each item ran once (the step allows no retry, or it
    succeeded with one call per item), the retry limit when every item used it, and
    otherwise the calls over the items (``"4 calls, 3 items"``), which is all that can be
    told."""
    if not attempts:
        return ""
    if step is None or step.foreach is None:
        return str(attempts)
    allowed = step.retry.attempts if step.retry else 1
    if allowed == 1:
        return "1"
    items = len(step.foreach) if isinstance(step.foreach, list) else None
    if isinstance(output, list):  # a foreach step that succeeded: one output per item
        items = len(output)
        if attempts in (items, items * allowed):
            return str(attempts // items)
    calls = f"{attempts} call{'' if attempts == 1 else 's'}"
    return f"{calls}, {items} item{'' if items == 1 else 's'}" if items is not None else calls


def _progress_text(detail: dict[str, Any], item: int | None) -> Text:
    """A call's progress, as the note column shows it: ``[item 2] 40% downloading``."""
    done, total, message = detail.get("done"), detail.get("total"), detail.get("message")
    parts = [f"item {item}:"] if item is not None else []
    if isinstance(done, int | float) and isinstance(total, int | float) and total > 0:
        parts.append(f"{min(max(done / total, 0), 1):.0%}")
    elif isinstance(done, int | float):
        parts.append(f"{done:g}")
    if message:
        parts.append(str(message))
    return Text(safe_text(" ".join(parts), one_line=True, limit=NOTE_CHARS), style="cyan")


def _error_text(error: Any, limit: int, *, one_line: bool = False) -> Text:
    return Text(
        safe_text(f"{error.failure_mode}: {error.message}", one_line=one_line, limit=limit),
        style="red",
    )


class LiveProgress:
    """A :class:`~dagentic.journal.Journal` that redraws a table of steps as they change."""

    def __init__(self, plan: CompiledPlan, console: Console) -> None:
        self.plan = plan
        self.rows: dict[str, dict[str, Any]] = {
            sid: {
                "status": "pending",
                "attempts": 0,
                "started": None,
                "ended": None,
                "note": None,
                "output": None,
            }
            for sid in plan.steps
        }
        self.live = Live(
            console=console, refresh_per_second=8, transient=False, get_renderable=self._table
        )

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The live table stopped meanwhile (an approval prompt is up), then redrawn."""
        if not self.live.is_started:
            yield
            return
        self.live.stop()
        try:
            yield
        finally:
            self.live.start()

    def record(self, event: StepEvent) -> None:
        row = self.rows.get(event.step_id or "")
        if row is None:
            return
        if event.kind == "scheduled":
            row["status"] = "queued"
        elif event.kind == "started":
            row["status"], row["started"] = "running", time.perf_counter()
        elif event.kind == "attempt":
            row["attempts"] = event.attempt
        elif event.kind == "item_finished":
            return  # one item of a foreach step: the step runs on
        elif event.kind == "progress":
            row["note"] = _progress_text(event.detail or {}, event.item)
        else:
            row["status"], row["ended"] = event.status or event.kind, time.perf_counter()
            row["attempts"] = event.attempt or row["attempts"]
            row["output"] = event.output
            if event.error is not None:
                row["note"] = _error_text(event.error, NOTE_CHARS, one_line=True)

    def _table(self) -> Table:
        table = Table(
            title=Text(safe_text(f"plan {self.plan.name}", one_line=True)),
            title_justify="left",
            expand=False,
        )
        for column in ("step", "tool", "status", "tries", "time", "note"):
            table.add_column(column, overflow="fold")
        now = time.perf_counter()
        for sid, row in self.rows.items():
            step = self.plan.steps[sid].step
            status = row["status"]
            shown: Any = Text(status, style=_STYLE.get(status, ""))
            if status == "running":
                shown = Group(Spinner("dots", text=Text(" running", style="cyan")))
            elapsed = ""
            if row["started"] is not None:
                elapsed = f"{(row['ended'] or now) - row['started']:.2f}s"
            table.add_row(
                Text(safe_text(sid, one_line=True)),
                Text(safe_text(self.plan.steps[sid].called or "check", one_line=True)),
                shown,
                tries(step, row["attempts"], row["output"]),
                elapsed,
                row["note"] or "",
            )
        return table


def render_result(
    result: RunResult,
    console: Console,
    *,
    steps: bool = True,
    plan: Plan | None = None,
    error: bool = True,
) -> None:
    """A plain summary of a finished run: steps (unless a live view showed them already),
    outputs, usage and the run's error (unless ``error`` is false: the caller shows it).
    ``plan`` (the plan that ran) tells which steps are ``foreach`` steps, for the tries
    column (see :func:`tries`)."""
    if steps:
        by_id = {s.id: s for s in plan.steps} if plan is not None else {}
        table = Table(
            title=Text(safe_text(f"run {result.run_id} of plan {result.plan}", one_line=True)),
            title_justify="left",
        )
        for column in ("step", "tool", "status", "tries", "time", "failure"):
            table.add_column(column, overflow="fold")
        for step in result.steps.values():
            duration = f"{step.duration:.2f}s" if step.duration is not None else ""
            table.add_row(
                Text(safe_text(step.id, one_line=True)),
                Text(safe_text(step.tool or "check", one_line=True)),
                Text(step.status.value, style=_STYLE.get(step.status.value, "")),
                tries(by_id.get(step.id), step.attempts, step.output),
                duration,
                _error_text(step.error, FAILURE_CHARS) if step.error else "",
            )
        console.print(table)
    if result.outputs:
        console.print(Text("outputs", style="bold"))
        for key, value in result.outputs.items():
            label = Text(f"  {safe_text(str(key), one_line=True)}:")
            shown = render_value(value)
            if isinstance(shown, Text) and "\n" not in shown.plain:
                console.print(Text.assemble(label, " ", shown))
            else:
                console.print(label)
                console.print(indented(shown, 4))
    usage = result.usage
    console.print(
        Text.assemble(
            (result.status.value, _STYLE.get(result.status.value, "")),
            f" in {usage.wall_time:.2f}s: {usage.steps} steps ran, {usage.tool_calls} tool "
            f"calls (run {safe_text(result.run_id, one_line=True)})",
        )
    )
    if error and result.error is not None:
        console.print(_error_text(result.error, FAILURE_CHARS))


def render_plan(
    plan: dict[str, Any], console: Console, tools: ToolRegistry, *, policy: str = "writes"
) -> None:
    """One plan version of an agent (an item of ``AgentResult.plans``), before it runs:
    each step, what it needs, its arguments (cut at PLAN_CHARS, with a marker), and
    whether its calls ask for approval under ``agent.approve`` = ``policy``."""
    console.rule(f"plan {plan['version']} ({_count(plan['attempts'], 'attempt')})")
    compiled = compile_plan({"version": 1, **_plan_body(plan)}, tools, judge=True)
    for sid, spec in compiled.steps.items():
        arrow = f"  <- {', '.join(spec.deps)}" if spec.deps else ""
        check = spec.step.check
        detail = (
            check.model_dump(by_alias=True, exclude_none=True)
            if check is not None
            else spec.step.args
        )
        note = ""
        if spec.step.approval == "required" and spec.tool is not None:
            per_call = (
                getattr(spec.tool, "effects", None) is not None or spec.tool.side_effects != "write"
            )
            note = (
                "  (needs approval if the call writes or sends data out)"
                if policy == "writes" and per_call
                else "  (needs approval)"
            )
        console.print(
            Text.assemble(
                ("  " + safe_text(sid, one_line=True), "bold"),
                " " + safe_text((spec.called or "check") + arrow, one_line=True),
                (note, "yellow"),
            )
        )
        console.print(indented(render_value(detail, limit=PLAN_CHARS), 6))


def render_answer(result: Any, console: Console) -> None:
    """An agent's result (an ``AgentResult``): what memory recalled, the last run, the
    answer with the outputs of the steps it cites, the error (once), usage."""
    for item in result.recalled:
        console.print(Text("recalled: " + safe_text(item, one_line=True, limit=200), "dim"))
    routing = getattr(result, "routing", None)
    if routing:
        plan = f" {routing['plan']}" if routing.get("plan") else ""
        shown = f"route: {routing['route']}{plan} ({routing['reason']})"
        console.print(Text(safe_text(shown, one_line=True, limit=300), "dim"))
    if result.steps:
        last = Plan.model_validate(_plan_body(result.plans[-1])) if result.plans else None
        render_result(result, console, steps=True, plan=last, error=False)
    if result.answer:
        console.rule("answer")
        console.print(Text(safe_text(result.answer, limit=ANSWER_CHARS)))
        for sid in result.cited_steps:
            step = result.steps.get(sid)
            if step is not None:
                console.print(
                    Text(
                        f"  [{safe_text(sid, one_line=True)}] "
                        f"{safe_text(step.tool or 'check', one_line=True)} "
                        f"({step.status.value}): {inline_value(step.output)}",
                        "dim",
                    )
                )
    if result.error is not None:
        console.print(
            Text.assemble(
                (result.error.failure_mode.value, "red"),
                ": " + safe_text(result.error.message, limit=ANSWER_CHARS),
            )
        )
    if getattr(result, "saved_plan", None):
        saved = safe_text(str(result.saved_plan), one_line=True)
        console.print(Text(f"library: the plan was saved as {saved}", "dim"))
    if result.remembered:
        action = safe_text(str(result.remembered["action"]), one_line=True)
        reason = safe_text(str(result.remembered["reason"]), one_line=True, limit=200)
        console.print(Text(f"memory: {action} ({reason})", "dim"))
    usage = result.usage
    console.print(
        Text(
            f"{_count(len(result.plans), 'plan')}, {_count(usage.steps, 'step')}, "
            f"{_count(usage.model_calls, 'model call')}, "
            f"{usage.input_tokens + usage.output_tokens} tokens, ${usage.cost:.4f}, "
            f"{usage.wall_time:.1f} s",
            "dim",
        )
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _plan_body(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan version of an AgentResult, without what the agent added to it."""
    return {k: v for k, v in plan.items() if k not in ("version", "attempts")}
