"""Model calls as part of a run: each one recorded (purpose, tokens, cost, time), traced
as a ``chat`` span, and checked against the run's token and cost budgets before it is
made. A call cut off by cancellation is recorded too: ``budget_exceeded`` once the run's
deadline has passed, ``cancelled`` otherwise.

A durable agent run keeps every reply in its journal under the digest of its request
(:func:`request_digest`): ``on_reply`` is told of each, and a resumed run gives them back
as ``replay``, so a call whose reply is in the journal is not made again."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio

from ..attributes import CACHE, FALLBACK_FROM, FALLBACK_REASON, GUARDRAIL
from ..cache import Cache, digest
from ..errors import BudgetExceededError, FailureMode
from ..result import ErrorInfo, ModelCall
from ..threads import run_in_thread
from ..tracing import Tracing, fail_span
from .base import Message, Model, ModelReply, Price
from .gateway import Models, fallback_reason

__all__ = ["Metered", "request_digest"]


class Metered:
    """Wraps the models of one agent run. ``using(purpose)`` gives a :class:`Model` whose
    calls are recorded under that purpose. ``model`` is one model, or :class:`Models`: a
    model per purpose and the fallbacks tried, in order, when a call fails (an error, a
    timeout, a rate limit: :func:`fallback_reason`). ``deadline`` (on anyio's clock) is
    when the run's time budget (``agent.max_wall_time``) ends: a call cancelled after it
    is recorded as ``budget_exceeded``.

    With a ``cache``, a deterministic call (temperature 0, or any with ``force_cache``)
    whose request was answered before is answered from it: no call is made, nothing is
    spent, and the call is recorded with ``cache="hit"``."""

    def __init__(
        self,
        model: Model | Models,
        *,
        prices: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        on_call: Callable[[ModelCall], None] | None = None,
        tracing: Tracing | None = None,
        deadline: float | None = None,
        replay: dict[str, list[dict[str, Any]]] | None = None,
        on_reply: Callable[[str, str, ModelReply, ModelCall], None] | None = None,
        cache: Cache | None = None,
        force_cache: bool = False,
    ) -> None:
        self.models = model if isinstance(model, Models) else Models(model)
        self.model = self.models.main
        self.replay = replay or {}  # request digest -> replies the journal has, in order
        self.on_reply = on_reply
        self.deadline = deadline
        self.tracing = tracing
        self.cache = cache
        self.force_cache = force_cache
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
        chain = self.models.chain(purpose)
        digest = request_digest(chain[0].name, purpose, messages, kwargs)
        kept = self.replay.get(digest)
        if kept:  # its reply is in the journal of the run being resumed: not asked again
            with self._span(chain[0], purpose, messages, kwargs) as span:
                return self._replayed(purpose, dict(kept.pop(0)), span)
        fallback: tuple[str, str] | None = None
        for position, model in enumerate(chain):
            if position:
                self.check_budget()
            try:
                with self._span(model, purpose, messages, kwargs) as span:
                    if span is not None and fallback is not None:
                        span.set_attributes(
                            {FALLBACK_FROM: fallback[0], FALLBACK_REASON: fallback[1]}
                        )
                    return await self._chat(
                        model, purpose, messages, digest, fallback, span, kwargs
                    )
            except Exception as exc:
                reason = fallback_reason(exc)
                if reason is None or position == len(chain) - 1:
                    raise
                fallback = (model.name, reason)
        raise AssertionError("unreachable")  # pragma: no cover

    def _span(
        self, model: Model, purpose: str, messages: list[Message], kwargs: dict[str, Any]
    ) -> contextlib.AbstractContextManager[Any]:
        """A ``chat`` span of a call to ``model`` (the span records an error raised in it),
        or no span without tracing."""
        tracing = self.tracing
        if tracing is None:
            return contextlib.nullcontext()
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model.name,
            "dagentic.purpose": purpose,
        }
        provider = getattr(model, "provider", None)
        if provider:
            attributes["gen_ai.provider.name"] = provider
        if kwargs.get("max_tokens"):
            attributes["gen_ai.request.max_tokens"] = kwargs["max_tokens"]
        if tracing.record_content:
            attributes["gen_ai.input.messages"] = tracing.content([m.to_dict() for m in messages])
        return tracing.span(f"chat {model.name}", attributes)

    def _replayed(self, purpose: str, data: dict[str, Any], span: Any) -> ModelReply:
        cost = float(data.pop("cost", 0.0))
        reply = ModelReply(**data)
        self._record(
            ModelCall(
                purpose=purpose,
                model=reply.model,
                input_tokens=reply.input_tokens,
                output_tokens=reply.output_tokens,
                cost=cost,  # spent once, by the run before; it counts against the budget
                started_at=datetime.now(UTC),
                replayed=True,
            )
        )
        if span is not None:
            span.set_attribute("dagentic.replayed", True)
        return reply

    async def _chat(
        self,
        model: Model,
        purpose: str,
        messages: list[Message],
        digest: str,
        fallback: tuple[str, str] | None,
        span: Any,
        kwargs: dict[str, Any],
    ) -> ModelReply:
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        key = self._cache_key(model, messages, kwargs)
        moved = {"fallback_from": fallback[0], "fallback_reason": fallback[1]} if fallback else {}
        if key is not None:
            assert self.cache is not None
            found = await run_in_thread(self.cache.get, "model", key)
            if span is not None:
                span.set_attribute(CACHE, "miss" if found is None else "hit")
            if found is not None:  # answered before: nothing is asked, nothing is spent
                reply = ModelReply(**found)
                call = ModelCall(
                    purpose=purpose,
                    model=reply.model,
                    started_at=started_at,
                    duration=time.perf_counter() - t0,
                    cache="hit",
                    **moved,
                )
                self._record(call)
                if self.on_reply is not None:
                    self.on_reply(purpose, digest, reply, call)
                if span is not None:
                    span.set_attribute("gen_ai.response.model", reply.model)
                return reply
        try:
            reply = await model.chat(messages, **kwargs)
        except Exception as exc:
            error = ErrorInfo.from_exception(exc)
            self._record(self._failed(model, purpose, started_at, t0, error, moved))
            raise  # the span records it
        except anyio.get_cancelled_exc_class():
            error = self._cut_off()
            self._record(self._failed(model, purpose, started_at, t0, error, moved))
            if span is not None:
                fail_span(span, None, mode=error.failure_mode, message=error.message)
            raise
        price = self.prices.get(reply.model) or self.prices.get(model.name) or Price()
        stored = key is not None
        if stored:
            assert self.cache is not None and key is not None
            kept = dataclasses.replace(reply, redacted=())
            await run_in_thread(self.cache.put, "model", key, dataclasses.asdict(kept))
        call = ModelCall(
            purpose=purpose,
            model=reply.model,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            cost=price.cost(reply.input_tokens, reply.output_tokens),
            started_at=started_at,
            duration=time.perf_counter() - t0,
            cache="store" if stored else ("miss" if key is not None else None),
            redacted=list(reply.redacted),
            **moved,
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
            if stored:
                span.set_attribute(CACHE, "store")
            if reply.redacted:
                span.set_attribute(GUARDRAIL, reply.redacted)
            if reply.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", (reply.finish_reason,))
            if self.tracing is not None and self.tracing.record_content:
                span.set_attribute(
                    "gen_ai.output.messages",
                    self.tracing.content([{"role": "assistant", "content": reply.text}]),
                )
        return reply

    def _cache_key(
        self, model: Model, messages: list[Message], kwargs: dict[str, Any]
    ) -> str | None:
        """The cache key of this request (provider, model and its endpoint, messages, schema,
        sampling), or None when it is not cached: no cache, or a model that samples (a
        temperature that is not 0, or not known) unless ``force_cache``."""
        if self.cache is None:
            return None
        temperature = kwargs.get("temperature")
        if temperature is None:
            temperature = getattr(model, "temperature", None)
        if temperature != 0 and not self.force_cache:
            return None
        max_tokens = kwargs.get("max_tokens") or getattr(model, "max_tokens", None)
        where = getattr(getattr(model, "client", None), "base_url", None)  # an endpoint's
        return digest(
            getattr(model, "provider", None),
            model.name,
            str(where or ""),
            [m.to_dict() for m in messages],
            kwargs.get("schema"),
            {"temperature": temperature, "max_tokens": max_tokens},
        )

    def _failed(
        self,
        model: Model,
        purpose: str,
        started_at: datetime,
        t0: float,
        error: ErrorInfo,
        moved: dict[str, Any],
    ) -> ModelCall:
        return ModelCall(
            purpose=purpose,
            model=model.name,
            started_at=started_at,
            duration=time.perf_counter() - t0,
            error=error,
            **moved,
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
    """A :class:`Model` view of a :class:`Metered` model with the purpose bound: the
    model of that purpose, metered."""

    def __init__(self, metered: Metered, purpose: str) -> None:
        self.metered = metered
        self.purpose = purpose
        self.model = metered.models.for_purpose(purpose)
        self.name = self.model.name
        self.supports_schema = self.model.supports_schema

    async def chat(self, messages: list[Message], **kwargs: Any) -> ModelReply:
        return await self.metered.chat(self.purpose, messages, **kwargs)

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)
