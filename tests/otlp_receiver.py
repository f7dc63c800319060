"""A small, real OTLP receiver for tests: http/protobuf and gRPC, on 127.0.0.1 only.

It decodes what OpenTelemetry's OTLP exporters send (``ExportTraceServiceRequest`` and
``ExportMetricsServiceRequest``), answers with the matching response, and records the
spans, metric points and request headers it received as plain Python values.

    with HttpReceiver() as receiver:           # or GrpcReceiver()
        ...export to receiver.endpoint...
        receiver.wait_for(lambda r: r.span_named("run hello"))
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = ["GrpcReceiver", "HttpReceiver", "Point", "Receiver", "SpanRecord"]

HOST = "127.0.0.1"
PROTOBUF = "application/x-protobuf"


# -- what is recorded -------------------------------------------------------------------


@dataclass(frozen=True)
class SpanRecord:
    name: str
    trace_id: str  # hex
    span_id: str  # hex
    parent_span_id: str  # hex; "" for a root span
    attributes: dict[str, Any]
    status_code: str  # STATUS_CODE_UNSET | STATUS_CODE_OK | STATUS_CODE_ERROR
    status_message: str
    resource: dict[str, Any]
    scope: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True)
class Point:
    """One data point of a metric: a sum's value, or a histogram's count and sum."""

    metric: str
    kind: str  # sum | gauge | histogram | exponential_histogram | summary
    attributes: dict[str, Any]
    value: float | int | None  # sum and gauge points
    count: int | None  # histogram points
    total: float | None  # histogram points
    resource: dict[str, Any]
    start_time: int  # unix nanoseconds
    time: int  # unix nanoseconds


def any_value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(pairs: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


def decode_spans(request: trace_service_pb2.ExportTraceServiceRequest) -> list[SpanRecord]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    SpanRecord(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes=attributes(span.attributes),
                        status_code=trace_pb2.Status.StatusCode.Name(span.status.code),
                        status_message=span.status.message,
                        resource=resource,
                        scope=scope_spans.scope.name,
                        events=[(e.name, attributes(e.attributes)) for e in span.events],
                    )
                )
    return spans


def decode_points(request: metrics_service_pb2.ExportMetricsServiceRequest) -> list[Point]:
    points = []
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                for p in getattr(metric, kind).data_points:
                    value = count = total = None
                    if kind in ("sum", "gauge"):
                        value = getattr(p, p.WhichOneof("value")) if p.WhichOneof("value") else None
                    else:
                        count, total = p.count, p.sum
                    points.append(
                        Point(
                            metric.name,
                            kind,
                            attributes(p.attributes),
                            value,
                            count,
                            total,
                            resource,
                            p.start_time_unix_nano,
                            p.time_unix_nano,
                        )
                    )
    return points


# -- the receiver -----------------------------------------------------------------------


class Receiver:
    """What a receiver got: spans, metric points, headers of every request (lowercased
    names), and the paths (http) or methods (grpc) called."""

    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []
        self.points: list[Point] = []
        self.headers: list[dict[str, str]] = []
        self.calls: list[str] = []
        self._changed = threading.Condition()

    @property
    def endpoint(self) -> str:
        raise NotImplementedError

    def start(self) -> Receiver:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- recording (from server threads) ------------------------------------------------

    def _got_traces(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        headers: dict[str, str],
        call: str,
    ) -> None:
        self._record(call, headers, spans=decode_spans(request))

    def _got_metrics(
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        headers: dict[str, str],
        call: str,
    ) -> None:
        self._record(call, headers, points=decode_points(request))

    def _record(
        self,
        call: str,
        headers: dict[str, str],
        *,
        spans: Iterable[SpanRecord] = (),
        points: Iterable[Point] = (),
    ) -> None:
        with self._changed:
            self.calls.append(call)
            self.headers.append(headers)
            self.spans.extend(spans)
            self.points.extend(points)
            self._changed.notify_all()

    # -- reading (from tests) -----------------------------------------------------------

    def wait_for(self, predicate: Callable[[Receiver], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate(self)`` is truthy; returns its last value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                outcome = predicate(self)
                left = deadline - time.monotonic()
                if outcome or left <= 0:
                    return outcome
                self._changed.wait(left)

    def span_named(self, name: str) -> SpanRecord | None:
        with self._changed:
            return next((s for s in self.spans if s.name == name), None)

    def spans_named(self, name: str) -> list[SpanRecord]:
        with self._changed:
            return [s for s in self.spans if s.name == name]

    def metric_names(self) -> set[str]:
        with self._changed:
            return {p.metric for p in self.points}

    def points_of(self, metric: str) -> list[Point]:
        with self._changed:
            return [p for p in self.points if p.metric == metric]


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer

    def do_POST(self) -> None:
        routes = {
            "/v1/traces": (
                trace_service_pb2.ExportTraceServiceRequest,
                trace_service_pb2.ExportTraceServiceResponse,
                self.server.receiver._got_traces,
            ),
            "/v1/metrics": (
                metrics_service_pb2.ExportMetricsServiceRequest,
                metrics_service_pb2.ExportMetricsServiceResponse,
                self.server.receiver._got_metrics,
            ),
        }
        body = self._body()
        route = routes.get(self.path)
        if route is None:
            return self._reply(404, b"not found", "text/plain")
        if self.headers.get_content_type() != PROTOBUF:
            return self._reply(415, b"expected " + PROTOBUF.encode(), "text/plain")
        encoding = (self.headers.get("Content-Encoding") or "identity").lower()
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding != "identity":
            return self._reply(415, b"unknown content encoding", "text/plain")
        request_type, response_type, record = route
        request = request_type()
        try:
            request.ParseFromString(body)
        except Exception:  # noqa: BLE001 - a bad body is the client's error
            return self._reply(400, b"undecodable protobuf", "text/plain")
        record(request, {k.lower(): v for k, v in self.headers.items()}, self.path)
        self._reply(200, response_type().SerializeToString(), PROTOBUF)

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    receiver: HttpReceiver


class HttpReceiver(Receiver):
    """OTLP over http/protobuf: POST /v1/traces and /v1/metrics."""

    def __init__(self) -> None:
        super().__init__()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> HttpReceiver:
        self._server = _HttpServer((HOST, 0), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="otlp-http-receiver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: GrpcReceiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.receiver._got_traces(request, _metadata(context), "TraceService/Export")
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: GrpcReceiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.receiver._got_metrics(request, _metadata(context), "MetricsService/Export")
        return metrics_service_pb2.ExportMetricsServiceResponse()


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {
        k.lower(): v if isinstance(v, str) else v.decode("latin-1")
        for k, v in context.invocation_metadata()
    }


class GrpcReceiver(Receiver):
    """OTLP over gRPC: TraceService/Export and MetricsService/Export."""

    def __init__(self) -> None:
        super().__init__()
        self._server: grpc.Server | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> GrpcReceiver:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _MetricsService(self), self._server
        )
        self.port = self._server.add_insecure_port(f"{HOST}:0")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
