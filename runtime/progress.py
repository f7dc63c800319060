"""Terminal rendering of runs: a live table while a plan runs, and a summary after.

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

from .display import indented, render_value, safe_text
from .graph import CompiledPlan
from .journal import StepEvent
from .plan import Plan, Step
from .result import RunResult

__all__ = ["LiveProgress", "render_result", "tries"]

NOTE_CHARS = 120  # of an error message in the live table
FAILURE_CHARS = 500  # of an error message in the summary table
_STYLE = {
    "succeeded": "green",
    "failed": "bold red",
    "skipped": "dim",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "blue",
    "pending": "dim",
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
                Text(safe_text(step.tool or "check", one_line=True)),
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
