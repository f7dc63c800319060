"""Tracing to a real OTLP collector: the ``otlp`` exporter over http/protobuf and gRPC,
in process and through the ``dagentic`` script, and with a collector that is down.

The collector is tests/otlp_receiver.py: a real http/protobuf server and a real gRPC
server on 127.0.0.1 (free ports) that decode what the OpenTelemetry exporters send.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from dagentic import Executor, FailureMode, RunResult, RunStatus, Settings, StepStatus, ToolRegistry
from dagentic.tracing import Tracing, tracing_from_settings

from tests import cli
from tests.blind import blind_settings
from tests.otlp_receiver import GrpcReceiver, HttpReceiver, Receiver, SpanRecord

HTTP, GRPC = "http/protobuf", "grpc"
RECEIVERS = {HTTP: HttpReceiver, GRPC: GrpcReceiver}
TRACE_CALLS = {HTTP: "/v1/traces", GRPC: "TraceService/Export"}
METRIC_CALLS = {HTTP: "/v1/metrics", GRPC: "MetricsService/Export"}

# One step succeeds, one gets an argument of the wrong type (invalid_args), one times out.
FAILING_PLAN = """\
name: traced
steps:
  - {id: word, tool: test.echo, args: {value: many}}
  - {id: bad, tool: test.sleep, args: {seconds: "${{ steps.word.output }}"}}
  - {id: slow, tool: test.sleep, args: {seconds: 5}, timeout: 100ms}
"""

OK_PLAN = """\
name: quiet
steps:
  - {id: one, tool: test.echo, args: {value: 1}}
"""

CLI_PLAN = """\
name: cli-traced
steps:
  - id: hello
    tool: notify.log
    args: {message: hello from the cli}
  - id: count
    tool: sql.query
    args: {sql: "SELECT count(*) AS n FROM regions"}
"""


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """No dagentic or OpenTelemetry settings from around the tests; loopback never goes
    through a proxy."""
    for name in list(os.environ):
        if name.startswith(("DAGENTIC_", "OTEL_")):
            monkeypatch.delenv(name)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1")


@pytest.fixture(params=[HTTP, GRPC])
def protocol(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def receiver(protocol: str) -> Iterator[Receiver]:
    with RECEIVERS[protocol]() as started:
        yield started


def otlp_settings(tmp_path: Path, *, export_delay: float = 1.0, **otlp: Any) -> Settings:
    """Settings exporting to OTLP; a fresh runs_dir keeps tracing_from_settings' cache
    from handing out a Tracing of another test."""
    tracing = {"exporter": "otlp", "export_delay": export_delay, "otlp": {"timeout": 5, **otlp}}
    return blind_settings(runs_dir=tmp_path / "runs", tracing=tracing)


@contextmanager
def tracing_of(settings: Settings) -> Iterator[Tracing]:
    """The settings' Tracing, shut down at the end (while its collector, if any, is still
    up: the atexit shutdown would otherwise export to a closed port)."""
    tracing = tracing_from_settings(settings)
    assert tracing is not None
    try:
        yield tracing
    finally:
        tracing.shutdown()


def run(tools: ToolRegistry, settings: Settings, tracing: Tracing, plan: str) -> RunResult:
    executor = Executor(tools, settings=settings, tracing=tracing)
    return anyio.run(functools.partial(executor.run, plan))


def step_span(receiver: Receiver, step_id: str) -> SpanRecord:
    spans = [s for s in receiver.spans if s.attributes.get("dagentic.step.id") == step_id]
    assert len(spans) == 1, [s.name for s in receiver.spans]
    return spans[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- in process


def test_spans_and_metrics_of_a_failing_run_reach_the_collector(
    tools: ToolRegistry, tmp_path: Path, protocol: str, receiver: Receiver
) -> None:
    settings = otlp_settings(
        tmp_path, endpoint=receiver.endpoint, protocol=protocol, headers={"x-api-key": "k"}
    )
    with tracing_of(settings) as tracing:
        result = run(tools, settings, tracing, FAILING_PLAN)
        tracing.flush()

    assert result.status is RunStatus.FAILED
    assert result.steps["bad"].error.failure_mode is FailureMode.INVALID_ARGS  # type: ignore[union-attr]
    assert result.steps["slow"].error.failure_mode is FailureMode.TIMEOUT  # type: ignore[union-attr]
    assert receiver.wait_for(lambda r: len(r.spans) >= 4 and r.points, timeout=5)

    # The run span: the root of the trace, failed.
    runs = receiver.spans_named("run traced")
    assert len(runs) == 1
    root = runs[0]
    assert root.parent_span_id == ""
    assert root.scope == "dagentic"
    assert root.attributes["dagentic.run_id"] == result.run_id
    assert root.attributes["dagentic.plan"] == "traced"
    assert root.attributes["dagentic.status"] == "failed"
    assert root.status_code == "STATUS_CODE_ERROR"

    # The step spans: children of the run span, in its trace.
    word, bad, slow = (step_span(receiver, sid) for sid in ("word", "bad", "slow"))
    for span in (word, bad, slow):
        assert span.trace_id == root.trace_id
        assert span.parent_span_id == root.span_id
    assert word.name == "execute_tool test.echo"
    assert word.status_code == "STATUS_CODE_UNSET"
    assert "dagentic.failure_mode" not in word.attributes

    assert bad.name == "execute_tool test.sleep"
    assert bad.attributes["dagentic.failure_mode"] == "invalid_args"
    assert bad.attributes["dagentic.status"] == "failed"
    assert bad.status_code == "STATUS_CODE_ERROR"
    assert "rejected its arguments" in bad.status_message
    assert [(n, a["exception.type"]) for n, a in bad.events] == [("exception", "InvalidArgsError")]

    assert slow.attributes["dagentic.failure_mode"] == "timeout"
    assert slow.status_code == "STATUS_CODE_ERROR"
    assert slow.status_message == "step 'slow': tool 'test.sleep' did not finish within 0.1s"
    assert [(n, a["exception.type"]) for n, a in slow.events] == [("exception", "StepTimeoutError")]

    assert {s.resource["service.name"] for s in receiver.spans} == {"dagentic"}

    # Both kinds of export arrived, every one with the configured header.
    assert TRACE_CALLS[protocol] in receiver.calls
    assert METRIC_CALLS[protocol] in receiver.calls
    assert all(h.get("x-api-key") == "k" for h in receiver.headers), receiver.headers

    # The metrics derived from those spans.
    assert {"dagentic.step.duration", "dagentic.failures"} <= receiver.metric_names()
    durations = {
        p.attributes["gen_ai.tool.name"]: p
        for p in receiver.points_of("dagentic.step.duration")
        if p.attributes["dagentic.status"] == "failed"
    }
    assert durations["test.sleep"].kind == "histogram"
    assert durations["test.sleep"].count == 2
    failures = {
        p.attributes["dagentic.failure_mode"]: p.value
        for p in receiver.points_of("dagentic.failures")
    }
    assert failures == {"invalid_args": 1, "timeout": 1}
    assert {p.resource["service.name"] for p in receiver.points} == {"dagentic"}


def test_an_unset_endpoint_falls_back_to_otel_exporter_otlp_endpoint(
    tools: ToolRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HttpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        settings = otlp_settings(tmp_path)
        with tracing_of(settings) as tracing:
            result = run(tools, settings, tracing, OK_PLAN)
            tracing.flush()
        assert result.status is RunStatus.SUCCEEDED
        assert receiver.wait_for(lambda r: r.span_named("run quiet"), timeout=5)
        assert "/v1/traces" in receiver.calls


# --------------------------------------------------------------------------- the script


def run_script(plan: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = cli.run_script(
        "run",
        plan.name,
        cwd=plan.parent,
        env={"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", **env},
        drop=("DAGENTIC_", "OTEL_"),
    )
    return done, time.perf_counter() - started


@pytest.mark.slow
def test_the_script_exports_its_spans_and_metrics_before_it_exits(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(textwrap.dedent(CLI_PLAN), encoding="utf-8")
    with HttpReceiver() as receiver:
        done, _ = run_script(
            plan,
            {
                "DAGENTIC_TRACING__EXPORTER": "otlp",
                "DAGENTIC_TRACING__OTLP__ENDPOINT": receiver.endpoint,
                "DAGENTIC_TRACING__OTLP__HEADERS": '{"x-api-key": "from-env"}',
                "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",  # the receiver's gzip path
            },
        )
        assert done.returncode == 0, done.stderr
        # Everything was sent before the process exited: no waiting here.
        assert receiver.wait_for(lambda r: r.span_named("run cli-traced"), timeout=0)

    root = receiver.span_named("run cli-traced")
    assert root is not None
    assert root.attributes["dagentic.status"] == "succeeded"
    assert root.status_code == "STATUS_CODE_UNSET"
    hello, count = step_span(receiver, "hello"), step_span(receiver, "count")
    assert hello.name == "execute_tool notify.log"
    assert count.name == "execute_tool sql.query"
    for span in (hello, count):
        assert span.parent_span_id == root.span_id
        assert span.attributes["dagentic.status"] == "succeeded"
    assert {s.resource["service.name"] for s in receiver.spans} == {"dagentic"}
    assert {"/v1/traces", "/v1/metrics"} <= set(receiver.calls)
    assert all(h.get("content-encoding") == "gzip" for h in receiver.headers)
    assert all(h.get("x-api-key") == "from-env" for h in receiver.headers)
    assert {"dagentic.step.duration", "dagentic.runs"} <= receiver.metric_names()
    # Cumulative sums: the flush after the run and the shutdown at exit may both report.
    runs = receiver.points_of("dagentic.runs")
    assert {(p.attributes["dagentic.status"], p.value) for p in runs} == {("succeeded", 1)}


@pytest.mark.slow
def test_the_script_succeeds_and_exits_promptly_when_the_collector_is_down(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(textwrap.dedent(CLI_PLAN), encoding="utf-8")
    done, seconds = run_script(
        plan,
        {
            "DAGENTIC_TRACING__EXPORTER": "otlp",
            "DAGENTIC_TRACING__OTLP__ENDPOINT": f"http://127.0.0.1:{closed_port()}",
            "DAGENTIC_TRACING__OTLP__TIMEOUT": "1",
        },
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    # Start-up (~1.5 s) plus, at 1 s each at most, the spans and metrics flushed after the
    # run and the metrics exported again at exit.
    assert seconds < 12, seconds


# --------------------------------------------------------------------------- collector down


@contextmanager
def dead_collector(kind: str) -> Iterator[int]:
    """A port where no collector answers: closed (connection refused), or silent (the
    kernel accepts connections that nobody ever reads or answers)."""
    if kind == "closed":
        yield closed_port()
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


@pytest.mark.parametrize("kind", ["closed", "silent"])
def test_a_dead_collector_neither_fails_nor_stalls_runs(
    tools: ToolRegistry, tmp_path: Path, protocol: str, kind: str
) -> None:
    timeout = 1.0
    with dead_collector(kind) as port:
        settings = otlp_settings(
            tmp_path,
            endpoint=f"http://127.0.0.1:{port}",
            protocol=protocol,
            timeout=timeout,
            export_delay=0.05,
        )
        with tracing_of(settings) as tracing:
            started = time.perf_counter()
            first = run(tools, settings, tracing, OK_PLAN)
            first_took = time.perf_counter() - started
            time.sleep(0.2)  # the exporter thread is now stuck on the first batch
            started = time.perf_counter()
            second = run(tools, settings, tracing, FAILING_PLAN)
            second_took = time.perf_counter() - started

            started = time.perf_counter()
            tracing.flush()
            flush_took = time.perf_counter() - started
            started = time.perf_counter()
        shutdown_took = time.perf_counter() - started

    assert first.status is RunStatus.SUCCEEDED
    assert second.status is RunStatus.FAILED  # its own failures, nothing of the exporter's
    assert second.steps["word"].status is StepStatus.SUCCEEDED
    # Runs never wait for an export (one would take `timeout`: 1 s).
    assert first_took < 0.9, first_took
    assert second_took < 0.9, second_took  # its slow step times out after 0.1 s
    # Each export gives up after `timeout`: flush waits for at most the batch in flight,
    # the second run's batch and the metrics; shutdown for the last metrics.
    assert flush_took < 3 * timeout + 2, flush_took
    assert shutdown_took < 2 * timeout + 2, shutdown_took


# --------------------------------------------------------------------------- bugs


def test_tracings_of_settings_that_differ_only_in_a_header_value_are_not_shared(
    tools: ToolRegistry, tmp_path: Path
) -> None:
    """tracing_from_settings caches per configuration, and ``model_dump_json()`` masks
    SecretStr header values ('**********'): the key must still tell a rotated API key (or
    another tenant's) from the first one, or exports would carry the first key."""
    with HttpReceiver() as receiver:
        old = otlp_settings(tmp_path, endpoint=receiver.endpoint, headers={"x-api-key": "old"})
        new = otlp_settings(tmp_path, endpoint=receiver.endpoint, headers={"x-api-key": "new"})
        with tracing_of(old) as old_tracing:
            with tracing_of(new) as new_tracing:
                run(tools, new, new_tracing, OK_PLAN)
                new_tracing.flush()
            assert receiver.wait_for(lambda r: r.headers, timeout=5)
            assert {h.get("x-api-key") for h in receiver.headers} == {"new"}
            assert new_tracing is not old_tracing


def test_grpc_exports_carry_headers_spelled_with_capitals(
    tools: ToolRegistry, tmp_path: Path
) -> None:
    """BUG: otlp.headers go to the gRPC exporter as given, and gRPC metadata keys must be
    lowercase: with a header named like 'X-API-Key' (fine over http/protobuf, and fine in
    OTEL_EXPORTER_OTLP_HEADERS, which OpenTelemetry lowercases) every gRPC export fails
    with INTERNAL 'Invalid metadata', so no span and no metric ever arrives."""
    with GrpcReceiver() as receiver:
        settings = otlp_settings(
            tmp_path,
            endpoint=receiver.endpoint,
            protocol=GRPC,
            headers={"X-API-Key": "k"},
            timeout=2,
        )
        with tracing_of(settings) as tracing:
            run(tools, settings, tracing, OK_PLAN)
            tracing.flush()
        assert receiver.wait_for(lambda r: r.span_named("run quiet"), timeout=2)
        assert all(h.get("x-api-key") == "k" for h in receiver.headers)
