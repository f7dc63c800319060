"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp's server, ...)
through the official ``openai`` SDK, which also retries 429 and 5xx with backoff."""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from ..errors import StepTimeoutError
from ..guardrails import Outbound, guard
from ..redact import hold, redact
from .base import Message, ModelError, ModelReply
from .scripted import estimate_tokens

__all__ = ["OpenAIModel"]

StructuredOutput = Literal["json_schema", "json_object", "none"]


class OpenAIModel:
    """A chat model behind an OpenAI-compatible API.

    ``structured_output`` says how the endpoint takes a JSON schema: ``json_schema``
    (OpenAI, vLLM, Ollama), ``json_object`` (llama-cpp-python's server:
    ``{"type": "json_object", "schema": ...}``) or ``none`` (the schema goes into the
    prompt and the reply is parsed and repaired).

    ``outbound`` is what the guardrails do to secrets and personal data in a prompt before
    it is sent (:mod:`dagentic.guardrails`): ``redact``, ``block`` or ``off``.
    """

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        structured_output: StructuredOutput = "json_schema",
        stream: bool = False,
        timeout: float = 120.0,
        max_retries: int = 3,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        outbound: Outbound = "off",
    ) -> None:
        import openai

        self.name = name
        self.outbound = outbound
        self.provider = "openai"
        self.structured_output = structured_output
        self.supports_schema = structured_output != "none"
        self.stream = stream
        self.max_tokens = max_tokens
        self.temperature = temperature
        key = api_key or os.environ.get("OPENAI_API_KEY") or ("none" if base_url else None)
        if key is None:
            raise ModelError(
                "model: the OpenAI provider needs an API key: set model.api_key "
                "(DAGENTIC_MODEL__API_KEY) or OPENAI_API_KEY, or model.base_url "
                "for a local endpoint"
            )
        hold(key)  # OPENAI_API_KEY too, once used: never in an error, a log or a span
        self.client = openai.AsyncOpenAI(
            base_url=base_url, api_key=key, timeout=timeout, max_retries=max_retries
        )

    async def chat(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ModelReply:
        import openai

        wire = [m.to_dict() for m in messages]
        redacted: list[str] = []
        if self.outbound != "off":
            where = f"model {self.name} at {self.client.base_url.host}"
            texts, redacted = guard([m["content"] for m in wire], self.outbound, where)
            wire = [{**m, "content": text} for m, text in zip(wire, texts, strict=True)]
        kwargs: dict[str, Any] = {
            "model": self.name,
            "messages": wire,
            "max_tokens": min(max_tokens or self.max_tokens, self.max_tokens),
            "temperature": self.temperature if temperature is None else temperature,
        }
        if schema is not None and self.structured_output == "json_schema":
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema},
            }
        elif schema is not None and self.structured_output == "json_object":
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        elif schema is not None:
            wire[-1] = {
                **wire[-1],
                "content": wire[-1]["content"] + "\n\nAnswer with one "
                "JSON value and nothing else. Its JSON schema:\n" + json.dumps(schema),
            }
        try:
            if self.stream:
                return await self._streamed(kwargs, schema, redacted)
            response = await self.client.chat.completions.create(**kwargs)
        except openai.APITimeoutError as exc:
            raise StepTimeoutError(redact(f"model {self.name}: no answer in time ({exc})")) from exc
        except openai.APIStatusError as exc:
            raise ModelError(
                f"model {self.name}: the endpoint answered {exc.status_code}: {_detail(exc)}",
                retryable=exc.status_code in (429, 500, 502, 503, 504),
                status=exc.status_code,
            ) from exc
        except openai.APIConnectionError as exc:
            raise ModelError(
                redact(
                    f"model {self.name}: cannot reach the endpoint {self.client.base_url} ({exc})"
                ),
                retryable=True,
            ) from exc
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content if choice else None) or ""
        usage = response.usage
        return ModelReply(
            text=text,
            model=response.model or self.name,
            input_tokens=usage.prompt_tokens if usage else self._estimate(wire),
            output_tokens=usage.completion_tokens if usage else estimate_tokens(text),
            finish_reason=choice.finish_reason if choice else None,
            structured=schema is not None and self.supports_schema,
            redacted=tuple(redacted),
        )

    async def _streamed(
        self, kwargs: dict[str, Any], schema: dict[str, Any] | None, redacted: list[str]
    ) -> ModelReply:
        parts: list[str] = []
        usage = None
        finish = None
        model = self.name
        stream = await self.client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in stream:
            model = chunk.model or model
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    parts.append(choice.delta.content)
                finish = choice.finish_reason or finish
        text = "".join(parts)
        return ModelReply(
            text=text,
            model=model,
            input_tokens=usage.prompt_tokens if usage else self._estimate(kwargs["messages"]),
            output_tokens=usage.completion_tokens if usage else estimate_tokens(text),
            finish_reason=finish,
            structured=schema is not None and self.supports_schema,
            redacted=tuple(redacted),
        )

    def _estimate(self, wire: list[dict[str, str]]) -> int:
        return sum(estimate_tokens(m["content"]) for m in wire)

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)


def _detail(exc: Any) -> str:
    """What the endpoint said went wrong, without any secret it echoed (an endpoint may
    quote the Authorization header it was sent): redacted whole, then cut."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return redact(str(message))[:300]
    return redact(str(getattr(exc, "message", exc)))[:300]
