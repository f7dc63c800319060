"""Terminal rendering of runs: a live table while a plan runs, and a summary after."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from .graph import CompiledPlan
from .journal import StepEvent
from .result import RunResult

__all__ = ["LiveProgress", "render_result"]

_STYLE = {
    "succeeded": "green",
    "failed": "bold red",
    "skipped": "dim",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "blue",
    "pending": "dim",
}


class LiveProgress:
    """A :class:`~dagentic.journal.Journal` that redraws a table of steps as they change."""

    def __init__(self, plan: CompiledPlan, console: Console) -> None:
        self.plan = plan
        self.rows: dict[str, dict[str, Any]] = {
            sid: {"status": "pending", "attempts": 0, "started": None, "ended": None, "note": ""}
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
            if event.error is not None:
                row["note"] = f"{event.error.failure_mode}: {event.error.message}"

    def _table(self) -> Table:
        table = Table(title=f"plan {self.plan.name}", title_justify="left", expand=False)
        for column in ("step", "tool", "status", "tries", "time", "note"):
            table.add_column(column, overflow="fold")
        now = time.perf_counter()
        for sid, row in self.rows.items():
            spec = self.plan.steps[sid]
            status = row["status"]
            shown: Any = Text(status, style=_STYLE.get(status, ""))
            if status == "running":
                shown = Group(Spinner("dots", text=Text(" running", style="cyan")))
            elapsed = ""
            if row["started"] is not None:
                elapsed = f"{(row['ended'] or now) - row['started']:.2f}s"
            table.add_row(
                sid,
                spec.step.tool or "check",
                shown,
                str(row["attempts"] or ""),
                elapsed,
                Text(row["note"][:120], style="red"),
            )
        return table


def render_result(result: RunResult, console: Console, *, steps: bool = True) -> None:
    """A plain summary of a finished run: steps (unless a live view showed them already),
    outputs, usage and the run's error."""
    if steps:
        table = Table(title=f"run {result.run_id} of plan {result.plan}", title_justify="left")
        for column in ("step", "tool", "status", "tries", "time", "failure"):
            table.add_column(column, overflow="fold")
        for step in result.steps.values():
            failure = f"{step.error.failure_mode}: {step.error.message}" if step.error else ""
            duration = f"{step.duration:.2f}s" if step.duration is not None else ""
            table.add_row(
                step.id,
                step.tool or "check",
                Text(step.status.value, style=_STYLE.get(step.status.value, "")),
                str(step.attempts or ""),
                duration,
                failure,
            )
        console.print(table)
    if result.outputs:
        console.print("[bold]outputs[/bold]")
        for key, value in result.outputs.items():
            console.print(
                f"  {key}: ", Text(repr(value) if not isinstance(value, str) else value), sep=""
            )
    usage = result.usage
    status_style = _STYLE.get(result.status.value, "")
    console.print(
        f"[{status_style}]{result.status.value}[/{status_style}] in "
        f"{usage.wall_time:.2f}s: {usage.steps} steps ran, {usage.tool_calls} tool "
        f"calls (run {result.run_id})",
        highlight=False,
    )
    if result.error is not None:
        console.print(Text(f"{result.error.failure_mode}: {result.error.message}", style="red"))
