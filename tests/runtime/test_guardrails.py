"""Outbound guardrails (dagentic.guardrails): secrets and personal data found in a prompt,
and redacted or refused before the prompt reaches a remote OpenAI-compatible endpoint
(guardrails.outbound), endpoints on this machine exempt by default. The endpoint is a small
HTTP server on 127.0.0.1 that records every request it receives."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from dagentic import PolicyBlockedError
from dagentic.guardrails import is_local_url, redact_text
from dagentic.models import make_model
from dagentic.models.base import Message
from dagentic.models.metered import Metered

from tests.blind import blind_settings

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
GITHUB_TOKEN = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
PROMPT = (
    f"Use key {AWS_KEY} and token {GITHUB_TOKEN}; mail jane.doe@example.com or call "
    "+1 415-555-0132; card 4111 1111 1111 1111; IBAN DE89 3704 0044 0532 0130 00; "
    "db postgresql://admin:s3cretPass@db.example.com/prod. What is the total?"
)
REDACTED = (
    "Use key [REDACTED API key] and token [REDACTED API key]; mail [REDACTED email address] "
    "or call [REDACTED phone number]; card [REDACTED card number]; IBAN [REDACTED IBAN]; "
    "db postgresql://[REDACTED URL credential]@db.example.com/prod. What is the total?"
)
KINDS = ["API key", "IBAN", "URL credential", "card number", "email address", "phone number"]
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "remote-model",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
}


class Recorder:
    """An OpenAI-compatible endpoint on 127.0.0.1 that answers every chat call with "42"
    and keeps the JSON bodies it received."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append(json.loads(self.rfile.read(length)))
                payload = json.dumps(COMPLETION).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def sent(self) -> list[str]:
        """The message contents of every request, in order."""
        return [m["content"] for body in self.received for m in body["messages"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    recorder = Recorder()
    yield recorder
    recorder.close()


def remote(endpoint: Recorder, outbound: str, **guardrails: Any) -> Any:
    """The model of settings whose endpoint is the recorder, treated as remote (the
    exemption of local endpoints off) unless ``guardrails`` say otherwise."""
    settings = blind_settings(
        model={"provider": "openai", "name": "remote-model", "base_url": endpoint.url},
        guardrails={"outbound": outbound, "exempt_local": False, **guardrails},
    )
    return make_model(settings)


@pytest.mark.anyio
async def test_redact_sends_the_prompt_without_its_secrets_and_personal_data(
    endpoint: Recorder,
) -> None:
    model = remote(endpoint, "redact")
    metered = Metered(model)

    reply = await metered.chat("plan", [Message("system", "You plan."), Message("user", PROMPT)])

    assert reply.text == "42"
    assert endpoint.sent() == ["You plan.", REDACTED]
    assert list(reply.redacted) == KINDS
    assert metered.calls[0].redacted == KINDS
    await model.client.close()


@pytest.mark.anyio
async def test_block_refuses_the_call_and_sends_nothing(endpoint: Recorder) -> None:
    model = remote(endpoint, "block")

    with pytest.raises(PolicyBlockedError) as raised:
        await model.chat([Message("user", PROMPT)])

    assert raised.value.message == (
        "guardrails: the prompt for model remote-model at 127.0.0.1 was not sent: it holds "
        "2 API keys, 1 IBAN, 1 URL credential, 1 card number, 1 email address, 1 phone "
        'number; remove them from the goal or the data, or set guardrails.outbound = "redact" '
        "to send it redacted"
    )
    assert endpoint.received == []
    await model.client.close()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "guardrails",
    [{"outbound": "off", "exempt_local": False}, {"outbound": "block"}],
    ids=["off", "local endpoint exempt by default"],
)
async def test_a_prompt_goes_as_it_is_when_off_or_to_this_machine(
    endpoint: Recorder, guardrails: dict[str, Any]
) -> None:
    settings = blind_settings(
        model={"provider": "openai", "name": "remote-model", "base_url": endpoint.url},
        guardrails=guardrails,
    )
    model = make_model(settings)

    reply = await model.chat([Message("user", PROMPT)])

    assert endpoint.sent() == [PROMPT]
    assert reply.redacted == ()
    await model.client.close()


def test_a_prompt_without_secrets_or_personal_data_is_left_alone() -> None:
    text = (
        "revenue was 1234567 on 2024-01-15 in 12,345 orders; step sql_query_total_revenue "
        "read /data/sales/2024/orders.parquet; run 550e8400e29b41d4a716446655440000; "
        "card-like 4111 1111 1111 1112 fails Luhn; The Orion total is 42 [total]."
    )
    assert redact_text(text) == (text, [])


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIB\n-----END RSA PRIVATE KEY----- x",
            "[REDACTED private key] x",
        ),
        (
            "https://api.example.com/v1?q=1&api_key=abc123def",
            "https://api.example.com/v1?q=1&[REDACTED URL credential]",
        ),
        ("token Zx8Qp2Lm9Vb4Nc7Rt1Yw6Ks3Hd5Gf0Ja here", "token [REDACTED API key] here"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abc123def456ghi789.",
            "jwt [REDACTED API key].",
        ),
        (
            "GB82WEST12345698765432 and GB82WEST12345698765433",
            "[REDACTED IBAN] and GB82WEST12345698765433",
        ),
        ("(415) 555-0132", "[REDACTED phone number]"),
    ],
)
def test_what_is_found(text: str, shown: str) -> None:
    assert redact_text(text)[0] == shown


def test_local_urls() -> None:
    assert is_local_url("http://127.0.0.1:8000/v1")
    assert is_local_url("http://localhost:11434/v1")
    assert is_local_url("http://[::1]:8000/v1")
    assert not is_local_url("https://api.openai.com/v1")
    assert not is_local_url("http://10.0.0.5:8000/v1")


@pytest.mark.anyio
async def test_a_secret_of_the_settings_is_redacted_whatever_its_shape(endpoint: Recorder) -> None:
    settings = blind_settings(
        model={
            "provider": "openai",
            "name": "remote-model",
            "base_url": endpoint.url,
            "api_key": "tulip-marmalade",  # no detector knows this shape
        },
        guardrails={"outbound": "redact", "exempt_local": False},
    )
    model = make_model(settings)

    reply = await model.chat([Message("user", "the key is tulip-marmalade, keep it")])

    assert endpoint.sent() == ["the key is [REDACTED configured secret], keep it"]
    assert reply.redacted == ("configured secret",)
    await model.client.close()
