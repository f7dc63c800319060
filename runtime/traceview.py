"""Reading run files back: one run's timeline, critical path, failures, usage and the
estimate made before it (``dagentic trace``), and totals over many runs (``dagentic
report``).

Both work on the span records of :mod:`dagentic.runfiles` (plain dicts) and return plain,
JSON-ready dicts; the ``render_*`` functions draw those with rich.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .attributes import (
    CACHE,
    FALLBACK_FROM,
    FALLBACK_REASON,
    RAY_LOST,
    RAY_NODE,
    RAY_PID,
    ROOT,
    RUN_ID,
)
from .attributes import FAILURE_MODE as MODE
from .display import safe_markup, safe_text
from .runfiles import read_spans, run_files

__all__ = [
    "BAR_WIDTH",
    "SINCE_FORMS",
    "analyse",
    "parse_since",
    "render_report",
    "render_trace",
    "report",
    "write_png",
]

BAR_WIDTH = 48  # characters of the timeline's time axis
SINCE_FORMS = "a duration like 30m, 1h or 2d, or an ISO date like 2026-01-31 or 2026-01-31T09:00"
UPSTREAM = "upstream_failed"
_STYLE = {
    "succeeded": "green",
    "failed": "bold red",
    "skipped": "dim",
    "cancelled": "yellow",
    "incomplete": "magenta",
}
_KIND_STYLE = {"plan": "cyan", "chat": "blue"}
SUBPLAN = "dagentic.subplan"  # on a sub-plan step's span (and its run's): the plan's name
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# -- spans --------------------------------------------------------------------------------


def _attrs(span: dict[str, Any]) -> dict[str, Any]:
    return span.get("attributes") or {}


def _kind(span: dict[str, Any]) -> str:
    attrs = _attrs(span)
    if "dagentic.step.id" in attrs:
        return "item" if "dagentic.item" in attrs else "step"
    operation = attrs.get("gen_ai.operation.name")
    if operation in ("invoke_agent", "chat"):
        return "agent" if operation == "invoke_agent" else "chat"
    if "dagentic.plan" in attrs:
        return "run"
    return "plan" if span.get("name") == "plan" else "span"


def _what(attrs: dict[str, Any]) -> str:
    """What a step span did: its tool, ``plan NAME`` (a sub-plan) or ``check``."""
    if attrs.get("gen_ai.tool.name"):
        return str(attrs["gen_ai.tool.name"])
    if attrs.get(SUBPLAN):
        return f"plan {attrs[SUBPLAN]}"
    return "check"


def _status(span: dict[str, Any]) -> str:
    status = _attrs(span).get("dagentic.status")
    if status:
        return str(status)
    return "failed" if span.get("status") == "ERROR" else "succeeded"


def _seconds(span: dict[str, Any]) -> float:
    return max(span["end"] - span["start"], 0) / 1e9


class _Tree:
    """The spans of a file by id and by parent; a span whose parent is not in the file
    (a root, or a child of a span a crash never wrote) is at the top."""

    def __init__(self, spans: list[dict[str, Any]]) -> None:
        self.spans = sorted(spans, key=lambda s: (s["start"], s["end"]))
        self.by_id = {s["span_id"]: s for s in self.spans}
        self.children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
        for span in self.spans:
            parent = span.get("parent_id")
            self.children[parent if parent in self.by_id else None].append(span)
        self.top = self.children[None]

    def below(self, span: dict[str, Any]) -> list[dict[str, Any]]:
        """``span`` and every span under it, by start time."""
        found, todo = set(), [span]
        while todo:
            current = todo.pop()
            if current["span_id"] in found:  # a span id written twice must not loop
                continue
            found.add(current["span_id"])
            todo.extend(self.children.get(current["span_id"], ()))
        return [s for s in self.spans if s["span_id"] in found]

    def run_of(self, span: dict[str, Any]) -> dict[str, Any] | None:
        """The nearest run (or agent) span above ``span``."""
        current = self.by_id.get(span.get("parent_id") or "")
        seen = {span["span_id"]}
        while current is not None and _kind(current) not in ("run", "agent"):
            if current["span_id"] in seen:  # parents written in a circle
                return None
            seen.add(current["span_id"])
            current = self.by_id.get(current.get("parent_id") or "")
        return current


def _header(span: dict[str, Any] | None, spans: list[dict[str, Any]]) -> dict[str, Any]:
    if span is None:  # no root span: the run never ended, or a crash cut its file short
        start, end = min(s["start"] for s in spans), max(s["end"] for s in spans)
        return {
            "kind": "incomplete",
            "name": "",
            "run_id": None,
            "status": "incomplete",
            "failure_mode": None,
            "message": "the root span is missing: the run did "
            "not end (or its spans were not all written)",
            "start": start,
            "wall_time": (end - start) / 1e9,
        }
    attrs = _attrs(span)
    return {
        "kind": _kind(span),
        "name": span["name"],
        "run_id": attrs.get(RUN_ID),
        "status": _status(span),
        "failure_mode": attrs.get(MODE),
        "message": span.get("message") if span.get("status") == "ERROR" else None,
        "start": span["start"],
        "wall_time": _seconds(span),
    }


# -- one run: dagentic trace ----------------------------------------------------------------


def analyse(spans: list[dict[str, Any]], run_id: str | None = None) -> dict[str, Any]:
    """The timeline, critical paths, failures and usage of the spans of one run file.
    ``run_id`` picks the root shown in the header when the file holds several."""
    if not spans:
        raise ValueError("no spans")
    tree = _Tree(spans)
    roots = [s for s in tree.top if _attrs(s).get(ROOT)]
    root = next(
        (s for s in roots if run_id and _attrs(s).get(RUN_ID) == run_id),
        roots[0] if roots else None,
    )
    t0 = min(s["start"] for s in spans)
    rows: list[dict[str, Any]] = []

    seen: set[str] = set()

    def walk(span: dict[str, Any], depth: int, run: dict[str, Any] | None) -> None:
        if span["span_id"] in seen:  # a span id written twice must not loop
            return
        seen.add(span["span_id"])
        kind = _kind(span)
        if kind == "item":  # counted on its step; model calls under it still show
            for child in tree.children.get(span["span_id"], ()):
                walk(child, depth, run)
            return
        if span is not root:
            rows.append(_row(span, kind, depth, run, t0, tree))
        if kind in ("run", "agent"):
            # a sub-plan's run: its steps under it, below the step that ran it
            run, deeper = span, (depth + 1 if _attrs(span).get(SUBPLAN) else 0)
        else:
            deeper = depth + 1
        for child in tree.children.get(span["span_id"], ()):
            walk(child, deeper, run)

    for top in tree.top:
        walk(top, 0, None)
    steps = [s for s in tree.spans if _kind(s) == "step"]
    chats = [s for s in tree.spans if _kind(s) == "chat"]
    usage = {
        "steps": sum(
            1
            for s in steps
            if _status(s) != "skipped" and not _attrs(s).get("dagentic.step.reused")
        ),
        "model_calls": len(chats),
        "input_tokens": sum(_attrs(s).get("gen_ai.usage.input_tokens") or 0 for s in chats),
        "output_tokens": sum(_attrs(s).get("gen_ai.usage.output_tokens") or 0 for s in chats),
        "cost": sum(_attrs(s).get("dagentic.cost") or 0.0 for s in chats),
    }
    if root is not None and _kind(root) == "agent":  # the agent's own totals win
        attrs = _attrs(root)
        for key, attr in (
            ("steps", "dagentic.steps"),
            ("model_calls", "dagentic.model_calls"),
            ("input_tokens", "gen_ai.usage.input_tokens"),
            ("output_tokens", "gen_ai.usage.output_tokens"),
            ("cost", "dagentic.cost"),
        ):
            if attr in attrs:
                usage[key] = attrs[attr]
    header = _header(root, spans)
    usage["wall_time"] = header["wall_time"]
    failures, skipped = _failures(tree)
    return {
        "root": header,
        "rejected_plans": _rejected(tree),
        "axis": (max(s["end"] for s in spans) - t0) / 1e9,
        "timeline": rows,
        "critical_paths": _critical_paths(tree),
        "estimates": _estimates(tree),
        "route": _route(tree),
        "failures": failures,
        "upstream_failed": skipped,
        "usage": usage,
    }


def _row(
    span: dict[str, Any], kind: str, depth: int, run: dict[str, Any] | None, t0: int, tree: _Tree
) -> dict[str, Any]:
    attrs = _attrs(span)
    detail = ""
    label = span["name"]
    if kind == "step":
        label = attrs["dagentic.step.id"]
        detail = _what(attrs)
    elif kind == "plan":
        label = f"plan v{attrs.get('dagentic.plan.version', '?')}"
        detail = f"{attrs.get('dagentic.plan.steps', '?')} steps"
    elif kind == "chat":
        label = f"chat {attrs.get('dagentic.purpose', '')}".strip()
        detail = attrs.get("gen_ai.request.model") or ""
    elif kind in ("run", "agent"):
        version = attrs.get("dagentic.plan.version")
        label = span["name"] + (f" v{version}" if version is not None else "")
        detail = (attrs.get(RUN_ID) or "")[:12]  # enough for `dagentic trace` to find it
        if attrs.get(SUBPLAN) and "." in str(attrs.get(RUN_ID) or ""):
            detail = "." + str(attrs[RUN_ID]).split(".", 1)[1]  # its caller's step (and item)
    if kind == "chat" and attrs.get(FALLBACK_FROM):
        detail += f" after {attrs[FALLBACK_FROM]} ({attrs.get(FALLBACK_REASON)})"
    if attrs.get(CACHE):  # a chat, a step or an item the caches answered, missed or kept
        detail = f"{detail} cache {attrs[CACHE]}".strip()
    if kind == "span" and attrs.get(RAY_NODE):  # where a step's call ran on a Ray cluster
        label = "ray task"
        detail = f"node {str(attrs[RAY_NODE])[:8]} pid {attrs.get(RAY_PID)}"
    lost = sum(1 for e in span.get("events") or () if e.get("name") == RAY_LOST)
    items = sum(1 for c in tree.children.get(span["span_id"], ()) if _kind(c) == "item")
    return {
        "kind": kind,
        "label": label,
        "detail": detail,
        "depth": depth,
        "status": _status(span),
        "failure_mode": attrs.get(MODE),
        "start": (span["start"] - t0) / 1e9,
        "end": (span["end"] - t0) / 1e9,
        "duration": _seconds(span),
        "run_id": _attrs(run).get(RUN_ID) if run is not None else None,
        "step_id": attrs.get("dagentic.step.id"),
        "waited_for": attrs.get("dagentic.step.waited_for"),
        "attempts": attrs.get("dagentic.attempts", attrs.get("dagentic.plan.attempts")),
        "reused": bool(attrs.get("dagentic.step.reused")),
        "items": items or None,
        "input_tokens": attrs.get("gen_ai.usage.input_tokens"),
        "output_tokens": attrs.get("gen_ai.usage.output_tokens"),
        "ray_reruns": lost or None,
    }


REJECTED = "dagentic.plan.rejected"  # the planner's event for an attempt it rejected
MAX_REJECTED = 50  # rejected attempts read from one run file


def _rejected(tree: _Tree) -> list[dict[str, Any]]:
    """The planner attempts rejected as invalid, from the events of the plan spans: the
    plan version, the attempt, its failure mode and its problems."""
    found: list[dict[str, Any]] = []
    for span in tree.spans:
        if _kind(span) != "plan":
            continue
        for event in span.get("events") or ():
            if not isinstance(event, dict) or event.get("name") != REJECTED:
                continue
            attrs = event.get("attributes") or {}
            problems = attrs.get("dagentic.plan.problems") or []
            found.append(
                {
                    "version": _attrs(span).get("dagentic.plan.version"),
                    "attempt": attrs.get("dagentic.plan.attempt"),
                    "failure_mode": attrs.get(MODE),
                    "problems": [str(p) for p in problems][:20]
                    if isinstance(problems, list | tuple)
                    else [str(problems)],
                    "problem_count": attrs.get("dagentic.plan.problem_count"),
                }
            )
            if len(found) >= MAX_REJECTED:
                return found
    return found


def _critical_paths(tree: _Tree) -> list[dict[str, Any]]:
    """Per run: from the step that finished last, back along ``dagentic.step.waited_for``
    (the dependency each step waited for longest)."""
    groups: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for span in tree.spans:
        if _kind(span) == "step":
            groups[span.get("parent_id")].append(span)
    paths = []
    for parent, steps in groups.items():
        ran = [s for s in steps if _status(s) != "skipped"] or steps
        by_id = {_attrs(s)["dagentic.step.id"]: s for s in steps}
        chain: list[dict[str, Any]] = []
        current: dict[str, Any] | None = max(ran, key=lambda s: s["end"])
        while current is not None and current not in chain:
            chain.append(current)
            current = by_id.get(_attrs(current).get("dagentic.step.waited_for") or "")
        chain.reverse()
        run = tree.by_id.get(parent or "")
        version = _attrs(run).get("dagentic.plan.version") if run else None
        paths.append(
            {
                "run_id": _attrs(run).get(RUN_ID) if run else None,
                "run": (run["name"] + (f" v{version}" if version is not None else ""))
                if run
                else None,
                "steps": [
                    {
                        "step_id": _attrs(s)["dagentic.step.id"],
                        "tool": _what(_attrs(s)),
                        "status": _status(s),
                        "duration": _seconds(s),
                    }
                    for s in chain
                ],
                "total": sum(_seconds(s) for s in chain),
                "wall_time": _seconds(run) if run else None,
            }
        )
    return paths


ESTIMATE = "dagentic.estimate."  # what `dagentic run` and `ask` put on a run's span


def _estimates(tree: _Tree) -> list[dict[str, Any]]:
    """Per run whose span holds the estimate made before it: the estimate and what the
    run took."""
    found = []
    for span in tree.spans:
        attrs = _attrs(span)
        p50 = attrs.get(ESTIMATE + "wall_p50")
        if _kind(span) != "run" or not isinstance(p50, int | float):
            continue
        version = attrs.get("dagentic.plan.version")
        actual = _seconds(span)
        found.append(
            {
                "run_id": attrs.get(RUN_ID),
                "run": span["name"] + (f" v{version}" if version is not None else ""),
                "wall_p50": p50,
                "wall_p90": attrs.get(ESTIMATE + "wall_p90"),
                "critical_path": list(attrs.get(ESTIMATE + "critical_path") or []),
                "tool_calls": attrs.get(ESTIMATE + "tool_calls"),
                "model_calls": attrs.get(ESTIMATE + "model_calls"),
                "tokens": attrs.get(ESTIMATE + "tokens"),
                "cost": attrs.get(ESTIMATE + "cost"),
                "actual": actual,
                "ratio": actual / p50 if p50 > 0 else None,
            }
        )
    return found


def _failures(
    tree: _Tree, spans: list[dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Failed steps, model calls and plans; then failed runs and agents, unless something
    under them failed the same way (a run failing because its step did is listed once);
    and, apart, the steps skipped because something before them failed."""
    failures: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    modes: dict[str, str | None] = {}  # span id -> failure mode, of what is listed
    later = []
    callers: list[tuple[dict[str, Any], dict[str, Any]]] = []  # sub-plan steps, entries
    for span in spans if spans is not None else tree.spans:
        kind, attrs = _kind(span), _attrs(span)
        if kind == "item" or (span.get("status") != "ERROR" and not attrs.get(MODE)):
            continue
        if kind in ("run", "agent"):
            later.append(span)
            continue
        run = tree.run_of(span)
        entry = {
            "kind": kind,
            "step_id": attrs.get("dagentic.step.id"),
            "span": span["name"],
            "tool": attrs.get("gen_ai.tool.name"),
            "failure_mode": attrs.get(MODE),
            "message": span.get("message"),
            "status": _status(span),
            "attempts": attrs.get("dagentic.attempts"),
            "run_id": _attrs(run).get(RUN_ID) if run is not None else None,
        }
        if attrs.get(SUBPLAN) and entry["failure_mode"] != UPSTREAM:
            callers.append((span, entry))  # listed unless its sub-plan's failure is
            continue
        modes[span["span_id"]] = entry["failure_mode"]
        (skipped if entry["failure_mode"] == UPSTREAM else failures).append(entry)
    for span, entry in callers:
        if entry["failure_mode"] in {modes.get(s["span_id"], "") for s in tree.below(span)}:
            continue
        modes[span["span_id"]] = entry["failure_mode"]
        failures.append(entry)
    for span in later:
        attrs = _attrs(span)
        if attrs.get(MODE) in {modes.get(s["span_id"], "") for s in tree.below(span)}:
            continue
        failures.append(
            {
                "kind": _kind(span),
                "step_id": None,
                "span": span["name"],
                "tool": None,
                "failure_mode": attrs.get(MODE),
                "message": span.get("message"),
                "status": _status(span),
                "attempts": None,
                "run_id": attrs.get(RUN_ID),
            }
        )
    return failures, skipped


def _bar(start: float, end: float, axis: float, width: int) -> tuple[int, int]:
    """The columns [a, b) a span covers on an axis of ``width`` characters."""
    scale = width / axis if axis > 0 else 0.0
    a = min(int(start * scale), width - 1)
    return a, max(a + 1, min(width, math.ceil(end * scale - 1e-9)))


def _note(row: dict[str, Any]) -> str:
    notes = []
    if row["failure_mode"]:
        notes.append(row["failure_mode"])
    if row["reused"]:
        notes.append("reused")
    if row["items"]:
        notes.append(f"{row['items']} items")
    elif row["kind"] == "step" and (row["attempts"] or 0) > 1:
        notes.append(f"{row['attempts']} attempts")
    if row["kind"] == "plan" and (row["attempts"] or 0) > 1:
        notes.append(f"{row['attempts']} attempts")
    if row["input_tokens"] is not None:
        notes.append(f"{row['input_tokens']}+{row['output_tokens'] or 0} tokens")
    if row.get("ray_reruns"):
        notes.append(f"run again {_plural(row['ray_reruns'], 'time')}: its Ray worker was lost")
    return ", ".join(notes)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _s(seconds: float) -> str:
    return f"{seconds:.2f}s" if seconds < 100 else f"{seconds:.0f}s"


def _fine(seconds: float) -> str:
    """Seconds, as milliseconds below one (an estimate of a quick plan is a few)."""
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else _s(seconds)


def _line(value: Any, limit: int = 200) -> str:
    """A name or attribute read from a run file, safe to show on one line."""
    return safe_text(str(value), one_line=True, limit=limit)


MESSAGE_CHARS = 1000  # of an error message read from a run file


def _route(tree: _Tree) -> dict[str, Any] | None:
    """How an agent run routed its goal in the end (the last ``route`` span's
    attributes: a library plan that ran but did not answer the goal is rejected by a
    later one), if it did."""
    for span in reversed(tree.spans):
        attrs = _attrs(span)
        if span.get("name") == "route" and attrs.get("dagentic.route"):
            candidates = str(attrs.get("dagentic.route.candidates") or "")
            return {
                "route": attrs.get("dagentic.route"),
                "plan": attrs.get("dagentic.route.plan") or None,
                "reason": attrs.get("dagentic.route.reason") or "",
                "candidates": [c for c in candidates.split(",") if c],
                "rejected": attrs.get("dagentic.route.rejected") or None,
            }
    return None


def render_trace(analysis: dict[str, Any], console: Console, *, width: int | None = None) -> None:
    """The trace as a header, a timeline, critical paths, failures and usage. The time
    axis takes ``width`` characters (default: what the console leaves, at most
    BAR_WIDTH)."""
    root = analysis["root"]
    if width is None:
        rows = analysis["timeline"]
        others = sum(
            max((len(text) for text in texts), default=0) + 3
            for texts in (
                ["span"] + ["  " * r["depth"] + _line(r["label"]) for r in rows],
                ["tool / model"] + [_line(r["detail"]) for r in rows],
                ["cancelled"],
                ["100.00s"],
                ["note"] + [_line(_note(r)) for r in rows],
            )
        )
        width = max(16, min(BAR_WIDTH, console.width - others))
    status = root["status"]
    title = Text(root["kind"], style=_STYLE.get(root["kind"], "bold"))
    if root["kind"] == "run":
        title.append(" " + _line(root["name"].removeprefix("run ")))
    if root["run_id"]:
        title.append(f" {_line(root['run_id'])}", style="dim")
    if root["kind"] == "incomplete":
        title.append(" trace", style="bold")
    else:
        title.append(" ")
        title.append(_line(status), style=_STYLE.get(status, ""))
    title.append(f" in {_s(root['wall_time'])}")
    console.print(title)
    if root["message"]:
        mode = f"{root['failure_mode']}: " if root["failure_mode"] else ""
        console.print(Text(safe_text(mode + root["message"], limit=MESSAGE_CHARS), style="red"))
    route = analysis.get("route")
    if route:
        plan = f" {route['plan']}" if route["plan"] else ""
        offered = ", ".join(route["candidates"]) or "none"
        console.print(
            Text(
                safe_text(
                    f"route: {route['route']}{plan} ({route['reason']}; offered: {offered})",
                    one_line=True,
                    limit=MESSAGE_CHARS,
                )
            )
        )

    axis = analysis["axis"]
    end_label = _s(axis)
    table = Table(box=box.HORIZONTALS, pad_edge=False, show_edge=False)
    table.add_column("span", no_wrap=True)
    table.add_column("tool / model", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("0s" + end_label.rjust(width - 2), width=width, no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("note", overflow="fold")
    for row in analysis["timeline"]:
        a, b = _bar(row["start"], row["end"], axis, width)
        style = (
            _STYLE.get(row["status"], "")
            if row["kind"] in ("step", "run", "agent")
            else ("red" if row["status"] == "failed" else _KIND_STYLE.get(row["kind"], ""))
        )
        bar = Text(" " * a)
        bar.append(("━" if row["kind"] in ("run", "agent") else "█") * (b - a), style=style)
        bar.append(" " * (width - b))
        if row["kind"] in ("run", "agent"):
            table.add_section()
        table.add_row(
            Text(
                "  " * row["depth"] + _line(row["label"]),
                style="bold" if row["kind"] in ("run", "agent") else "",
            ),
            Text(_line(row["detail"]), style="dim"),
            Text(_line(row["status"]), style=_STYLE.get(row["status"], "")),
            bar,
            _s(row["duration"]),
            Text(_line(_note(row), 400), style="red" if row["failure_mode"] else "dim"),
        )
    console.print(table)

    for path in analysis["critical_paths"]:
        nested = path["run_id"] is not None and path["run_id"] != root["run_id"]
        where = f" of {path['run']}" if path["run"] and (root["kind"] != "run" or nested) else ""
        chain = " → ".join(f"{p['step_id']} {_s(p['duration'])}" for p in path["steps"])
        took = f" (the run took {_s(path['wall_time'])})" if path["wall_time"] else ""
        console.print(
            f"[bold]critical path{safe_markup(where, one_line=True)}:[/bold] "
            f"{safe_markup(chain, one_line=True)} = {_s(path['total'])}{took}",
            highlight=False,
        )

    for estimate in analysis.get("estimates", ()):
        where = f" of {estimate['run']}" if root["kind"] != "run" else ""
        p90 = estimate["wall_p90"]
        ratio = f" ({estimate['ratio']:.2f} × the p50)" if estimate["ratio"] is not None else ""
        console.print(
            Text.assemble(
                (_line(f"estimate{where}:"), "bold"),
                _line(
                    f" p50 {_fine(estimate['wall_p50'])}"
                    + (f", p90 {_fine(p90)}" if isinstance(p90, int | float) else "")
                    + f"; the run took {_fine(estimate['actual'])}{ratio}"
                ),
            )
        )

    rejected = analysis.get("rejected_plans") or ()
    if rejected:
        console.print("[bold]rejected plans[/bold] (the planner's attempts that were invalid)")
    for entry in rejected:
        console.print(
            Text.assemble(
                _line(f"  plan v{entry['version'] or '?'} attempt {entry['attempt'] or '?'} "),
                (_line(entry["failure_mode"] or "plan_invalid"), "red"),
                _line(
                    f": {len(entry['problems'])} problem"
                    + ("" if len(entry["problems"]) == 1 else "s")
                ),
            )
        )
        for problem in entry["problems"][:5]:
            console.print(Text("    - " + safe_text(problem, one_line=True, limit=300)))
        more = (entry.get("problem_count") or len(entry["problems"])) - min(
            len(entry["problems"]), 5
        )
        if more > 0:
            console.print(Text(f"    ... and {more} more", style="dim"))

    failures, skipped = analysis["failures"], analysis["upstream_failed"]
    if failures or skipped:
        console.print("[bold]failures[/bold]")
    for failure in failures:
        what = failure["step_id"] or failure["span"]
        tool = f" ({failure['tool']})" if failure["tool"] else ""
        console.print(
            Text.assemble(
                f"  {_line(what)}{_line(tool)} ",
                (_line(failure["failure_mode"]), "red"),
                ": " + safe_text(str(failure["message"]), limit=MESSAGE_CHARS),
            )
        )
    if skipped:
        ids = ", ".join(dict.fromkeys(_line(s["step_id"]) for s in skipped))
        console.print(
            Text(
                f"  {len(skipped)} skipped because a step before them failed ({UPSTREAM}): {ids}",
                style="dim",
            )
        )

    usage = analysis["usage"]
    console.print(
        Text.assemble(
            ("usage:", "bold"),
            _line(
                f" {_plural(usage['steps'], 'step')}, "
                f"{_plural(usage['model_calls'], 'model call')}, {usage['input_tokens']} "
                f"input + {usage['output_tokens']} output tokens, ${usage['cost']:.4f}, "
                f"{_s(usage['wall_time'])} wall time"
            ),
        )
    )


# -- many runs: dagentic report -------------------------------------------------------------


# Where a failure happened: in planning (the planner's plan was invalid: plan_invalid,
# invalid_tool, invalid_args), in the run (a step, a tool, a model call), or in the goal
# (the plan was valid, its calls fit their tools, but the results were wrong for the goal).
GOAL_MODES = frozenset({"check_failed", "goal_not_met", "false_success"})
STAGE_NOTE = (
    "where: planning = the planner's plan was invalid (invalid_tool: a tool nobody provides, "
    "invalid_args: arguments that do not fit the tool); goal = the plan was valid and ran, "
    "but its results were wrong for the goal (a check or the verification said so)"
)


def _stage(kind: str, mode: str) -> str:
    if kind == "plan":
        return "planning"
    if mode in GOAL_MODES:
        return "goal"
    if kind == "agent" and mode in ("plan_invalid", "invalid_tool", "invalid_args"):
        return "planning"
    return "run"


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``30m``, ``1h``, ``2d`` (``s``, ``m``, ``h``, ``d``, ``w``) before ``now``, or an ISO
    date or time (local time unless it says otherwise). Raises ValueError."""
    now = now or datetime.now().astimezone()
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match:
        return now - timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since takes {SINCE_FORMS}; got {text!r}") from None
    return when.astimezone() if when.tzinfo is None else when


def _percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile of sorted ``values``."""
    return values[max(math.ceil(q * len(values)) - 1, 0)]


def report(runs_dir: Path, since: datetime | None = None) -> dict[str, Any]:
    """Runs by status, failure modes (with the newest example of each) and step
    latencies per tool, over the run files in ``runs_dir`` whose root started at or after
    ``since``."""
    since_ns = int(since.timestamp() * 1e9) if since is not None else None
    by_status: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    stages: dict[str, Counter[str]] = defaultdict(Counter)  # per mode: where it happened
    examples: dict[str, dict[str, Any]] = {}
    latencies: dict[str, list[float]] = defaultdict(list)
    failed_steps: Counter[str] = Counter()
    for path in run_files(runs_dir):  # newest first: the first example is the newest
        if since_ns is not None and path.stat().st_mtime_ns < since_ns:
            continue  # written before `since`, so nothing in it started after
        spans = list(read_spans(path))
        if not spans:
            continue
        tree = _Tree(spans)
        roots = [s for s in tree.top if _attrs(s).get(ROOT)]
        runs: list[tuple[dict[str, Any] | None, list[dict[str, Any]]]] = [
            (r, tree.below(r)) for r in roots
        ] or [(None, tree.spans)]
        for root, below in runs:
            start = root["start"] if root else min(s["start"] for s in below)
            if since_ns is not None and start < since_ns:
                continue
            by_status[_status(root) if root else "incomplete"] += 1
            by_kind[("agent" if _kind(root) == "agent" else "plan") if root else "incomplete"] += 1
            run_id = _attrs(root).get(RUN_ID) if root else path.stem
            failures, skipped = _failures(tree, below)
            for failure in failures + skipped:
                mode = failure["failure_mode"] or "unknown"
                modes[mode] += 1
                stages[mode][_stage(failure["kind"], mode)] += 1
                examples.setdefault(
                    mode,
                    {
                        "run_id": run_id,
                        "step": failure["step_id"] or failure["span"],
                        "message": failure["message"],
                    },
                )
            for span in below:
                if (
                    _kind(span) != "step"
                    or _status(span) == "skipped"
                    or _attrs(span).get("dagentic.step.reused")
                ):
                    continue
                tool = _what(_attrs(span))
                latencies[tool].append(_seconds(span))
                failed_steps[tool] += _status(span) == "failed"
    tools: list[dict[str, Any]] = []
    for tool, values in latencies.items():
        values.sort()
        tools.append(
            {
                "tool": tool,
                "count": len(values),
                "p50": _percentile(values, 0.5),
                "p95": _percentile(values, 0.95),
                "max": values[-1],
                "failures": failed_steps[tool],
            }
        )
    tools.sort(key=lambda t: (-t["p95"], t["tool"]))
    return {
        "runs_dir": str(runs_dir),
        "since": since.isoformat() if since else None,
        "runs": sum(by_status.values()),
        "by_status": dict(by_status.most_common()),
        "by_kind": dict(by_kind.most_common()),
        "failure_modes": [
            {
                "mode": mode,
                "count": count,
                "stages": dict(stages[mode].most_common()),
                "example": examples[mode],
            }
            for mode, count in sorted(modes.items(), key=lambda m: (-m[1], m[0]))
        ],
        "tools": tools,
    }


def feedback_counts(
    rows: Iterable[tuple[Any, ...]], since: datetime | None = None
) -> dict[str, Any]:
    """Feedback (rows of ``RunStore.feedback``: run_id, at, verdict, note, plan_name) given
    at or after ``since``, counted in all and per library plan ("(no plan)" for runs of
    none)."""
    after = since.timestamp() if since is not None else None
    good = bad = 0
    by_plan: dict[str, dict[str, int]] = {}
    for _, at, verdict, _, plan in rows:
        if after is not None and at < after:
            continue
        counts = by_plan.setdefault(plan or "(no plan)", {"good": 0, "bad": 0})
        key = "good" if verdict == "good" else "bad"
        counts[key] += 1
        good, bad = good + (key == "good"), bad + (key == "bad")
    return {"good": good, "bad": bad, "by_plan": dict(sorted(by_plan.items()))}


def render_report(data: dict[str, Any], console: Console) -> None:
    since = f" since {data['since']}" if data["since"] else ""
    kinds = ", ".join(f"{n} {kind}" for kind, n in data["by_kind"].items())
    kinds = f" ({kinds})" if kinds else ""
    console.print(
        f"[bold]{_plural(data['runs'], 'run')}[/bold]{safe_markup(kinds)} in "
        f"{safe_markup(data['runs_dir'], one_line=True)}{safe_markup(since)}",
        highlight=False,
    )
    feedback = data.get("feedback")
    if feedback and (feedback["good"] or feedback["bad"]):
        table = Table("plan", "good", "bad", title="feedback", title_justify="left")
        for name, counts in feedback["by_plan"].items():
            table.add_row(Text(_line(name)), str(counts["good"]), str(counts["bad"]))
        table.add_row(Text("all runs", style="bold"), str(feedback["good"]), str(feedback["bad"]))
        console.print(table)
    if not data["runs"]:
        return
    table = Table("status", "runs", title="runs by status", title_justify="left")
    for status, count in data["by_status"].items():
        table.add_row(Text(_line(status), style=_STYLE.get(status, "")), str(count))
    console.print(table)
    if data["failure_modes"]:
        table = Table(
            "failure mode",
            "count",
            "example step",
            "message",
            "run",
            "where",
            title="failure modes",
            title_justify="left",
            caption=STAGE_NOTE,
            caption_justify="left",
        )
        for mode in data["failure_modes"]:
            example = mode["example"]
            table.add_row(
                Text(_line(mode["mode"]), style="red"),
                str(mode["count"]),
                Text(_line(example["step"] or "")),
                Text(safe_text(example["message"] or "", limit=MESSAGE_CHARS)),
                Text(_line(example["run_id"] or ""), style="dim"),
                Text(_line(", ".join(f"{k} {n}" for k, n in (mode.get("stages") or {}).items()))),
            )
        console.print(table)
    if data["tools"]:
        table = Table(
            "tool",
            "steps",
            "p50",
            "p95",
            "max",
            "failed",
            title="step latency by tool",
            title_justify="left",
        )
        for tool in data["tools"]:
            table.add_row(
                Text(_line(tool["tool"])),
                str(tool["count"]),
                _s(tool["p50"]),
                _s(tool["p95"]),
                _s(tool["max"]),
                Text(str(tool["failures"]), style="red" if tool["failures"] else ""),
            )
        console.print(table)


def write_png(data: dict[str, Any], path: Path) -> None:
    """Failure modes and step latency per tool as a PNG chart. Needs matplotlib (it is
    imported here, and only the Agg canvas is used: no window, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    modes, tools = data["failure_modes"], data["tools"]
    rows = max(len(modes), len(tools), 1)
    figure = Figure(figsize=(12, 1.5 + 0.35 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    for axes, shown, title in (
        (left, modes, "failure modes"),
        (right, tools, "step latency by tool"),
    ):
        axes.set_title(title)
        if not shown:
            axes.set_axis_off()
            axes.text(0.5, 0.5, "none", ha="center", va="center", transform=axes.transAxes)
    if modes:
        left.barh(
            [m["mode"] for m in modes][::-1], [m["count"] for m in modes][::-1], color="tab:red"
        )
        left.set_xlabel("failures")
        left.xaxis.set_major_locator(MaxNLocator(integer=True))
    if tools:
        positions = range(len(tools))
        right.barh(
            [p - 0.2 for p in positions],
            [t["p95"] for t in tools][::-1],
            height=0.4,
            label="p95",
            color="tab:orange",
        )
        right.barh(
            [p + 0.2 for p in positions],
            [t["p50"] for t in tools][::-1],
            height=0.4,
            label="p50",
            color="tab:blue",
        )
        right.set_yticks(list(positions), [t["tool"] for t in tools][::-1])
        right.set_xlabel("seconds")
        right.legend(loc="lower right")
    since = ""
    if data["since"]:
        since = f" since {datetime.fromisoformat(data['since']):%Y-%m-%d %H:%M}"
    figure.suptitle(f"{_plural(data['runs'], 'run')}{since}")
    figure.savefig(path, format="png", dpi=100)
