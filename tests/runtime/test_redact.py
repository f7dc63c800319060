"""No secret dagentic holds leaves it in text: the redactor's forms, where its secrets come
from (core settings, plugin sections, the environment), and, end to end, a real endpoint on
127.0.0.1 that echoes the API key it was sent in its error body: the key shows up nowhere,
not in the CLI's output or logs, the JSON result, the span file or an OTLP collector.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus

import pytest
from dagentic import ErrorInfo, FailureMode, Settings
from dagentic.plugins.web.settings import WebSettings
from dagentic.redact import (
    MASK,
    RedactingStream,
    Redactor,
    hold,
    redact,
    redact_spans,
    secret_values,
    structlog_processor,
)
from pydantic import BaseModel, ConfigDict, SecretStr

from tests import cli
from tests.otlp_receiver import HttpReceiver


def new_key() -> str:
    return f"k{secrets.token_hex(16)}"  # no prefix another test might hold as a key


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --------------------------------------------------------------------------- the redactor

KEY = "sk-live-Zq8v3/LrT0+pé=&x"
FORMS = {
    "plain": f"key={KEY}.",
    "quoted in JSON": json.dumps({"detail": f"bad key {KEY}"}),
    "JSON with ascii escapes": json.dumps({"detail": KEY}, ensure_ascii=True),
    "URL-encoded": f"https://api.example.com/?key={quote(KEY, safe='')}&q=1",
    "URL-encoded, lower-case hex": f"?key={quote(KEY, safe='').lower()}",
    "form-encoded": f"key={quote_plus(KEY)}",
    "base64": b64(KEY),
    "basic auth (base64 of user:key)": "Authorization: Basic " + b64(f"user:{KEY}"),
    "base64, second alignment": b64(f"a{KEY}zz"),
    "base64, third alignment": b64(f"ab{KEY}z"),
    "base64url": base64.urlsafe_b64encode(f"xy{KEY}".encode()).decode(),
    "wrapped over lines": f"{KEY[:9]}\n      {KEY[9:]}",
    "twice, back to back": KEY + KEY,
}


@pytest.mark.parametrize("text", list(FORMS.values()), ids=list(FORMS))
def test_every_form_of_a_secret_is_masked(text: str) -> None:
    out = Redactor([KEY]).redact(text)
    assert MASK in out
    assert KEY not in out
    for form in (quote(KEY, safe=""), quote_plus(KEY), b64(KEY).rstrip("=")):
        assert form not in out
    # what is left decodes to no secret either
    assert KEY.encode() not in _decoded(out)


def _decoded(text: str) -> bytes:
    found = b""
    for word in text.replace(":", " ").split():
        try:
            found += base64.b64decode(word + "=" * (-len(word) % 4), validate=False)
        except ValueError:
            continue
    return found


def test_text_without_secrets_is_left_alone() -> None:
    redactor = Redactor([KEY])
    text = "sk-live is a prefix; Zq8v3 is a part; neither is the key"
    assert redactor.redact(text) == text
    assert Redactor([]).redact(KEY) == KEY


def test_short_values_are_not_secrets() -> None:
    """'none' (the key of a local endpoint) or a one-letter value would mask ordinary text."""
    assert Redactor(["none", "x", "abcde"]).redact("none of x abcde") == "none of x abcde"


def test_overlapping_secrets_are_both_masked() -> None:
    redactor = Redactor(["abcdef123456", "123456ghijkl"])
    assert redactor.redact("abcdef123456ghijkl") in ("***ghijkl", "abcdef***")
    assert "123456" not in redactor.redact("abcdef123456 and 123456ghijkl")


def test_nested_values_are_redacted_keys_too() -> None:
    redactor = Redactor([KEY])
    value = {KEY: [f"a {KEY}", (KEY, 1)], "n": 2.5, "none": None}
    assert redactor.redact_value(value) == {MASK: [f"a {MASK}", (MASK, 1)], "n": 2.5, "none": None}


# --------------------------------------------------------------------------- the secrets held


class VaultSettings(BaseModel):
    """A third-party plugin's settings, with secrets of its own."""

    model_config = ConfigDict(extra="forbid")
    section: ClassVar[str] = "vault"

    token: SecretStr
    backups: list[SecretStr] = []
    region: str = "eu"


def test_a_settings_object_holds_every_secret_in_it_core_and_plugins() -> None:
    model, otlp, brave, tavily, vault, backup = (new_key() for _ in range(6))
    settings = Settings(
        _env_prefix="DAGENTIC_TEST_UNUSED_",  # type: ignore[call-arg]
        model={"api_key": model},
        tracing={"otlp": {"headers": {"authorization": f"Bearer {otlp}"}}},
        web={"brave": {"api_key": brave}, "tavily": {"api_key": tavily}},
        vault={"token": vault, "backups": [backup]},
    )
    assert redact(f"{model} {otlp}") == f"{MASK} {MASK}"
    # Plugin sections count once a plugin has read them (they are validated then).
    assert redact(brave) == brave
    settings.plugin(WebSettings)
    settings.plugin(VaultSettings)
    text = f"brave={brave} tavily={tavily} vault={vault} backup={backup} region=eu"
    assert redact(text) == f"brave={MASK} tavily={MASK} vault={MASK} backup={MASK} region=eu"
    assert set(secret_values(settings)) == {
        model,
        f"Bearer {otlp}",
        brave,
        tavily,
        vault,
        backup,
    }


def test_secrets_stay_held_after_their_settings_are_gone() -> None:
    key = new_key()
    Settings(_env_prefix="DAGENTIC_TEST_UNUSED_", model={"api_key": key})  # type: ignore[call-arg]
    import gc

    gc.collect()
    assert redact(key) == MASK


def test_an_environment_key_is_held_once_a_model_client_uses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagentic.models.openai_compat import OpenAIModel

    key = new_key()
    monkeypatch.setenv("OPENAI_API_KEY", key)
    assert redact(key) == key
    OpenAIModel("m", base_url="http://127.0.0.1:9/v1")
    assert redact(key) == MASK


def test_error_info_never_carries_a_held_secret() -> None:
    key = new_key()
    hold(key)
    error = ErrorInfo(
        failure_mode=FailureMode.TOOL_ERROR, message=f"denied: {key}", details={"sent": key}
    )
    assert (error.message, error.details) == (f"denied: {MASK}", {"sent": MASK})
    changed = error.model_copy(update={"message": f"again {key}"})  # skips validation
    assert key not in changed.model_dump_json()
    from_exc = ErrorInfo.from_exception(ValueError(f"bad {key}"))
    assert from_exc.message == f"bad {MASK}"


def test_logs_and_streams_are_redacted() -> None:
    import io

    key = new_key()
    hold(key)
    event = structlog_processor(None, "info", {"event": f"calling with {key}", "n": 1})
    assert event == {"event": f"calling with {MASK}", "n": 1}
    out = io.StringIO()
    RedactingStream(out).write(f"Bearer {key}\n")
    assert out.getvalue() == f"Bearer {MASK}\n"


def test_finished_spans_are_redacted_before_export() -> None:
    from dagentic.spans import FastTracerProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    key = new_key()
    hold(key)
    exporter = InMemorySpanExporter()
    provider = FastTracerProvider([exporter], Resource.create({}), schedule_delay=0.01)
    with provider.get_tracer("t").start_as_current_span(f"call {key}") as span:
        span.set_attribute("http.request.header.authorization", (f"Bearer {key}",))
        span.set_attribute("error.message", f"the endpoint said: {key}")
        span.add_event("retry", {"reason": f"401 for {key}"})
        span.record_exception(ValueError(f"refused {key}"))
    provider.force_flush()
    (done,) = exporter.get_finished_spans()
    assert key not in done.to_json()
    assert done.attributes["error.message"] == f"the endpoint said: {MASK}"
    redact_spans([])  # nothing to do is fine
    provider.shutdown()


# --------------------------------------------------------------------------- end to end


class EchoKey(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that refuses every key, quoting it back in every form:
    as sent, URL-encoded, and inside basic auth."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        auth = self.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ")
        message = (
            f"Incorrect API key provided: {key}. You sent: {auth!r}; as a query: "
            f"?key={quote(key, safe='')}; as basic auth: {b64('user:' + key)}"
        )
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}})
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoKey)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def leaks(key: str, *texts: str) -> list[str]:
    """The texts that hold the key or its URL or base64 form."""
    forms = (key, quote(key, safe=""), b64(key).rstrip("="), b64("user:" + key)[:-4])
    return [t[:200] for t in texts if any(f in t for f in forms)]


def ask(tmp_path: Path, echo: str, key: str, **env: str) -> tuple[Any, list[str]]:
    runs = tmp_path / "runs"
    done = cli.run_script(
        "-vv",
        "ask",
        "Which region had the most revenue?",
        "--json",
        cwd=tmp_path,
        env={
            "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1",
            "DAGENTIC_MODEL__PROVIDER": "openai",
            "DAGENTIC_MODEL__NAME": "echo",
            "DAGENTIC_MODEL__BASE_URL": echo,
            "DAGENTIC_MODEL__MAX_RETRIES": "0",
            "DAGENTIC_MEMORY__ENABLED": "false",
            "DAGENTIC_RUNS_DIR": str(runs),
            "DAGENTIC_TRACING__EXPORTER": "jsonl",
            "DAGENTIC_TRACING__EXPORT_DELAY": "0.05",
            **env,
        },
        drop=("DAGENTIC_", "OTEL_", "OPENAI_"),
        timeout=120,
    )
    files = [  # the journal (SQLite) too: no secret in any file
        p.read_bytes().decode("utf-8", "replace") for p in runs.rglob("*") if p.is_file()
    ]
    return done, files


@pytest.mark.parametrize("where", ["settings", "environment"])
def test_a_key_an_endpoint_echoes_shows_up_nowhere(tmp_path: Path, echo: str, where: str) -> None:
    key = new_key()
    env = {"DAGENTIC_MODEL__API_KEY": key} if where == "settings" else {"OPENAI_API_KEY": key}
    done, files = ask(tmp_path, echo, key, **env)
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["error"]["message"].startswith(
        "model echo: the endpoint answered 401: Incorrect API key provided: ***. You sent: "
        "'Bearer ***'; as a query: ?key=***; as basic auth: "
    )
    assert files, "no span file was written"
    assert any("the endpoint answered 401" in f for f in files)  # the error is in the spans
    assert leaks(key, done.stdout, done.stderr, *files) == []


def test_a_key_an_endpoint_echoes_never_reaches_an_otlp_collector(
    tmp_path: Path, echo: str
) -> None:
    key, header = new_key(), new_key()
    with HttpReceiver() as receiver:
        done, _ = ask(
            tmp_path,
            echo,
            key,
            DAGENTIC_MODEL__API_KEY=key,
            DAGENTIC_TRACING__EXPORTER="otlp",
            DAGENTIC_TRACING__OTLP__ENDPOINT=receiver.endpoint,
            DAGENTIC_TRACING__OTLP__HEADERS=json.dumps({"x-api-key": header}),
        )
        assert receiver.wait_for(lambda r: r.spans)
    assert done.returncode == 1, done.stderr
    spans = repr(receiver.spans)
    assert "the endpoint answered 401" in spans
    assert leaks(key, spans, done.stdout, done.stderr) == []
    assert leaks(header, spans, done.stdout, done.stderr) == []
    assert all(h.get("x-api-key") == header for h in receiver.headers)  # sent where it belongs
