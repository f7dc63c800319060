"""A model that answers from a script: for unit tests of planners, judges and agents."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from .base import Message, ModelError, ModelReply

__all__ = ["ScriptedModel", "estimate_tokens"]

Script = str | dict[str, Any] | list[Any] | BaseException | Callable[..., Any]


def estimate_tokens(text: str) -> int:
    """The documented estimate for providers without a tokenizer: one token per four
    characters, rounded up."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


class ScriptedModel:
    """Answers each call with the next item of ``replies``: a string, a JSON value
    (serialised), an exception (raised), or a function of ``(messages, schema)`` returning
    one of those. Every call is kept in ``calls`` for assertions. Running out of replies is
    an error, so a test sees every unexpected call."""

    supports_schema = True

    def __init__(
        self,
        replies: Iterable[Script],
        *,
        name: str = "scripted",
        temperature: float | None = None,
    ) -> None:
        self.replies = list(replies)
        self.name = name
        # None: its replies are not a function of the prompt (never cached); 0: they are,
        # as a deterministic model's (the response cache may keep them)
        self.temperature = temperature
        self.provider = "scripted"
        self.calls: list[dict[str, Any]] = []

    async def chat(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ModelReply:
        self.calls.append({"messages": list(messages), "schema": schema})
        if not self.replies:
            raise ModelError(f"scripted model: no reply left for call {len(self.calls)}")
        reply = self.replies.pop(0)
        if callable(reply) and not isinstance(reply, BaseException):
            reply = reply(messages, schema)
        if isinstance(reply, BaseException):
            raise reply
        text = reply if isinstance(reply, str) else json.dumps(reply)
        prompt = sum(self.count_tokens(m.content) for m in messages)
        return ModelReply(
            text=text,
            model=self.name,
            input_tokens=prompt,
            output_tokens=self.count_tokens(text),
            finish_reason="stop",
            structured=schema is not None,
        )

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)
