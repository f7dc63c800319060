"""Model calls as part of a run: each one recorded (purpose, tokens, cost, time), traced
as a ``chat`` span, and checked against the run's token and cost budgets before it is
made. A call cut off by cancellation is recorded too: ``budget_exceeded`` once the run's
deadline has passed, ``cancelled`` otherwise.

A durable agent run keeps every reply in its journal under the digest of its request
(:func:`request_digest`): ``on_reply`` is told of each, and a resumed run gives them back
as ``replay``, so a call whose reply is in the journal is not made again."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio

from ..errors import BudgetExceededError, FailureMode
from ..result import ErrorInfo, ModelCall
from ..tracing import Tracing, fail_span
from .base import Message, Model, ModelReply, Price

__all__ = ["Metered", "request_digest"]


class Metered:
    """Wraps a model for one agent run. ``using(purpose)`` gives a :class:`Model` whose
    calls are recorded under that purpose. ``deadline`` (on anyio's clock) is when the
    run's time budget (``agent.max_wall_time``) ends: a call cancelled after it is
    recorded as ``budget_exceeded``."""

    def __init__(
        self,
        model: Model,
        *,
        prices: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        on_call: Callable[[ModelCall], None] | None = None,
        tracing: Tracing | None = None,
        deadline: float | None = None,
        replay: dict[str, list[dict[str, Any]]] | None = None,
        on_reply: Callable[[str, str, ModelReply, ModelCall], None] | None = None,
    ) -> None:
        self.model = model
        self.replay = replay or {}  # request digest -> replies the journal has, in order
        self.on_reply = on_reply
        self.deadline = deadline
        self.tracing = tracing
        self.prices = {
            k: Price(v.input, v.output) if not isinstance(v, Price) else v
            for k, v in (prices or {}).items()
        }
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self.on_call = on_call
        self.calls: list[ModelCall] = []

    @property
    def tokens(self) -> int:
        return sum(c.input_tokens + c.output_tokens for c in self.calls)

    @property
    def cost(self) -> float:
        return sum(c.cost for c in self.calls)

    def using(self, purpose: str) -> _Purpose:
        return _Purpose(self, purpose)

    def check_budget(self) -> None:
        """Raise :class:`BudgetExceededError` if tokens or cost are spent."""
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            raise BudgetExceededError(
                f"token budget spent: {self.tokens} of {self.max_tokens} tokens used by "
                f"{len(self.calls)} model calls (agent.max_tokens)",
                tokens=self.tokens,
            )
        if self.max_cost is not None and self.cost >= self.max_cost:
            raise BudgetExceededError(
                f"cost budget spent: ${self.cost:.4f} of ${self.max_cost:.4f} (agent.max_cost)",
                cost=self.cost,
            )

    async def chat(self, purpose: str, messages: list[Message], **kwargs: Any) -> ModelReply:
        self.check_budget()
        if self.tracing is None:
            return await self._chat(purpose, messages, None, **kwargs)
        tracing = self.tracing
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": self.model.name,
            "dagentic.purpose": purpose,
        }
        provider = getattr(self.model, "provider", None)
        if provider:
            attributes["gen_ai.provider.name"] = provider
        if kwargs.get("max_tokens"):
            attributes["gen_ai.request.max_tokens"] = kwargs["max_tokens"]
        if tracing.record_content:
            attributes["gen_ai.input.messages"] = tracing.content([m.to_dict() for m in messages])
        with tracing.span(f"chat {self.model.name}", attributes) as span:
            return await self._chat(purpose, messages, span, **kwargs)

    async def _chat(
        self, purpose: str, messages: list[Message], span: Any, **kwargs: Any
    ) -> ModelReply:
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        digest = request_digest(self.model.name, purpose, messages, kwargs)
        kept = self.replay.get(digest)
        if kept:  # its reply is in the journal of the run being resumed: not asked again
            data = dict(kept.pop(0))
            cost = float(data.pop("cost", 0.0))
            reply = ModelReply(**data)
            call = ModelCall(
                purpose=purpose,
                model=reply.model,
                input_tokens=reply.input_tokens,
                output_tokens=reply.output_tokens,
                cost=cost,  # spent once, by the run before; it counts against the budget
                started_at=started_at,
                replayed=True,
            )
            self._record(call)
            if span is not None:
                span.set_attribute("dagentic.replayed", True)
            return reply
        try:
            reply = await self.model.chat(messages, **kwargs)
        except Exception as exc:
            self._record(self._failed(purpose, started_at, t0, ErrorInfo.from_exception(exc)))
            raise  # the span records it
        except anyio.get_cancelled_exc_class():
            error = self._cut_off()
            self._record(self._failed(purpose, started_at, t0, error))
            if span is not None:
                fail_span(span, None, mode=error.failure_mode, message=error.message)
            raise
        price = self.prices.get(reply.model) or self.prices.get(self.model.name) or Price()
        call = ModelCall(
            purpose=purpose,
            model=reply.model,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            cost=price.cost(reply.input_tokens, reply.output_tokens),
            started_at=started_at,
            duration=time.perf_counter() - t0,
        )
        self._record(call)
        if self.on_reply is not None:
            self.on_reply(purpose, digest, reply, call)
        if span is not None:
            span.set_attributes(
                {
                    "gen_ai.response.model": reply.model,
                    "gen_ai.usage.input_tokens": reply.input_tokens,
                    "gen_ai.usage.output_tokens": reply.output_tokens,
                    "dagentic.cost": call.cost,
                }
            )
            if reply.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", (reply.finish_reason,))
            if self.tracing is not None and self.tracing.record_content:
                span.set_attribute(
                    "gen_ai.output.messages",
                    self.tracing.content([{"role": "assistant", "content": reply.text}]),
                )
        return reply

    def _failed(self, purpose: str, started_at: datetime, t0: float, error: ErrorInfo) -> ModelCall:
        return ModelCall(
            purpose=purpose,
            model=self.model.name,
            started_at=started_at,
            duration=time.perf_counter() - t0,
            error=error,
        )

    def _cut_off(self) -> ErrorInfo:
        """Why a call that was cancelled ended."""
        if self.deadline is not None and anyio.current_time() >= self.deadline:
            return ErrorInfo(
                failure_mode=FailureMode.BUDGET_EXCEEDED,
                message="the model call was cut off: the run's time budget was spent "
                "(agent.max_wall_time)",
                type="BudgetExceededError",
            )
        return ErrorInfo(
            failure_mode=FailureMode.CANCELLED,
            message="the model call was cancelled by its caller",
            type="Cancelled",
        )

    def _record(self, call: ModelCall) -> None:
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)


def request_digest(
    model: str, purpose: str, messages: list[Message], options: dict[str, Any]
) -> str:
    """What identifies a model call: the model, its purpose, the messages and the options
    (schema, sampling), as a SHA-256."""
    text = json.dumps(
        [model, purpose, [m.to_dict() for m in messages], options],
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode()).hexdigest()


class _Purpose:
    """A :class:`Model` view of a :class:`Metered` model with the purpose bound."""

    def __init__(self, metered: Metered, purpose: str) -> None:
        self.metered = metered
        self.purpose = purpose
        self.name = metered.model.name
        self.supports_schema = metered.model.supports_schema

    async def chat(self, messages: list[Message], **kwargs: Any) -> ModelReply:
        return await self.metered.chat(self.purpose, messages, **kwargs)

    def count_tokens(self, text: str) -> int:
        return self.metered.model.count_tokens(text)
