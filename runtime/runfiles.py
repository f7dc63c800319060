"""The run files under ``runs_dir``: one JSONL file of spans per run (the default tracing
exporter), a JSONL file of metrics snapshots, and reading them back for ``dagentic trace``
and ``dagentic report``.

A line of a run file is one finished span::

    {"name": "execute_tool sql.query", "trace_id": "…32 hex…", "span_id": "…16 hex…",
     "parent_id": "…" | null, "start": ns, "end": ns, "status": "UNSET" | "OK" | "ERROR",
     "message": "…" | null, "attributes": {…}, "events": [{"name", "time", "attributes"}],
     "scope": "dagentic"}
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .attributes import RUN_ID
from .spans import FastSpan

__all__ = [
    "JsonlMetricExporter",
    "JsonlSpanExporter",
    "find_run",
    "read_spans",
    "run_files",
    "span_line",
]


def _plain(value: Any) -> Any:
    """JSON for what the encoder does not know: attribute mappings, tuples are lists."""
    return dict(value) if isinstance(value, Mapping) else str(value)


_encode = json.JSONEncoder(default=_plain, ensure_ascii=False, separators=(",", ":")).encode


def span_line(span: ReadableSpan | FastSpan) -> str:
    """One finished span as a line of a run file (built by hand: it runs for every span)."""
    ctx = span.context
    parent = span.parent
    status = span.status
    scope = span.instrumentation_scope
    events = (
        _encode(
            [{"name": e.name, "time": e.timestamp, "attributes": e.attributes} for e in span.events]
        )
        if span.events
        else "[]"
    )
    parent_id = f'"{parent.span_id:016x}"' if parent is not None else "null"
    return (
        f'{{"name":{_encode(span.name)},"trace_id":"{ctx.trace_id:032x}",'
        f'"span_id":"{ctx.span_id:016x}","parent_id":{parent_id},'
        f'"start":{span.start_time},"end":{span.end_time},'
        f'"status":"{status.status_code.name}","message":{_encode(status.description)},'
        f'"attributes":{_encode(span.attributes)},"events":{events},'
        f'"scope":{_encode(scope.name if scope is not None else None)}}}'
    )


class JsonlSpanExporter(SpanExporter):
    """Appends finished spans to ``<runs_dir>/<run_id>.jsonl``: the file of the dagentic run
    at the root of the span's call tree (told by :meth:`export_routed`), else
    ``<trace_id>.jsonl``."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = Path(runs_dir)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.export_routed(spans, [None] * len(spans))

    def export_routed(
        self, spans: Sequence[ReadableSpan | FastSpan], roots: Sequence[str | None]
    ) -> SpanExportResult:
        """Write ``spans`` (SDK spans, or dagentic's own ended ones) to the files of their
        ``roots``."""
        files: dict[str, list[str]] = {}
        for span, root in zip(spans, roots, strict=True):
            name = root if root is not None else format(span.context.trace_id, "032x")
            files.setdefault(name, []).append(span_line(span))
        result = SpanExportResult.SUCCESS
        for name, lines in files.items():  # one file failing must not cost the others
            path = run_file(self.runs_dir, name)
            try:
                self.runs_dir.mkdir(parents=True, exist_ok=True)
                # Lone surrogates (a file name from os.fsdecode, say) become "?": escaped,
                # they would come back as surrogates that no terminal can print.
                with path.open("a", encoding="utf-8", errors="replace") as out:
                    out.write("\n".join(lines) + "\n")
            except (OSError, ValueError) as exc:
                print(f"dagentic: cannot write spans to {path}: {exc}", file=sys.stderr)
                result = SpanExportResult.FAILURE
        return result


class JsonlMetricExporter(MetricExporter):
    """Appends each metrics snapshot (OTLP-shaped JSON) as one line to ``path``."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)

    def export(
        self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if not any(
            scope.metrics
            for resource in metrics_data.resource_metrics
            for scope in resource.scope_metrics
        ):
            return MetricExportResult.SUCCESS
        line = json.dumps(json.loads(metrics_data.to_json()), separators=(",", ":"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        except OSError:
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def run_file(runs_dir: Path, run_id: str) -> Path:
    """The file of run ``run_id``: its id, or — when the id is not a plain, short file
    name (or is ``metrics``) — a cleaned, cut id with a hash of the real one."""
    safe = "".join(
        c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in run_id
    ).lstrip(".")
    if safe != run_id or len(safe) > 120 or safe == "metrics":
        digest = hashlib.sha256(run_id.encode("utf-8", "backslashreplace")).hexdigest()
        safe = f"{safe[:80]}-{digest[:12]}".lstrip("-")
    return Path(runs_dir) / f"{safe}.jsonl"


def run_files(runs_dir: Path) -> list[Path]:
    """The run files in ``runs_dir``, newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    files = [p for p in runs_dir.glob("*.jsonl") if p.name != "metrics.jsonl"]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


def read_spans(path: Path) -> Iterator[dict[str, Any]]:
    """The spans of a run file; a line cut short by a crash is skipped."""
    with Path(path).open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if _is_span(record):
                yield record


def _is_span(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and isinstance(record.get("span_id"), str)
        and isinstance(record.get("name"), str)
        and isinstance(record.get("start"), int)
        and isinstance(record.get("end"), int)
        and isinstance(record.get("attributes", {}), dict)
    )


def find_run(runs_dir: Path, run_id: str) -> Path | None:
    """The file holding run ``run_id``: ``<run_id>.jsonl``, the one file whose name starts
    with ``run_id``, or the newest file with a run span of that id (a plan version of an
    agent run is filed under the agent run). Raises ValueError when ``run_id`` starts
    several file names."""
    exact = run_file(runs_dir, run_id)
    if exact.is_file():
        return exact
    files = run_files(runs_dir)
    prefixed = [p for p in files if p.stem.startswith(run_id)] if run_id else []
    if len(prefixed) == 1:
        return prefixed[0]
    if prefixed:
        shown = ", ".join(p.stem for p in prefixed[:5]) + (", ..." if len(prefixed) > 5 else "")
        raise ValueError(
            f"run id '{run_id}' is ambiguous: {len(prefixed)} runs start with "
            f"it ({shown}); give more of it"
        )
    needle = f'"{RUN_ID}":{_encode(run_id)}'
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as text:
            if any(needle in line for line in text):
                return path
    return None
