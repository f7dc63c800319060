"""Which model answers which call: a model per purpose (``model.planner``, ``model.judge``,
``model.answer``, ``model.memory``, each defaulting to the main model; ``model.router``,
which chooses a library plan, to the planner's) and the fallbacks
that take over when a call fails (``model.fallbacks``); :func:`dagentic.models.make_models`
makes them from the settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import StepTimeoutError
from .base import Model, ModelError

__all__ = ["ROLES", "Models", "fallback_reason", "role_of"]

ROLES = ("planner", "judge", "answer", "memory", "router")
# the purpose of a call (ModelCall.purpose) -> the role whose model makes it
_ROLE_OF = {
    "plan": "planner",
    "repair": "planner",
    "critique": "planner",
    "judge": "judge",
    "verify": "judge",
    "answer": "answer",
    "memory": "memory",
    "route": "router",
}


def role_of(purpose: str) -> str | None:
    """The role (``planner``, ``judge``, ``answer``, ``memory``, ``router``) that makes calls for
    ``purpose``; None for a purpose no role covers (the main model makes those)."""
    return _ROLE_OF.get(purpose)


@dataclass(slots=True)
class Models:
    """The main model, a model per role where one is set, and the fallbacks, in order."""

    main: Model
    roles: dict[str, Model] = field(default_factory=dict)
    fallbacks: list[Model] = field(default_factory=list)

    def for_purpose(self, purpose: str) -> Model:
        role = role_of(purpose)
        if role == "router" and role not in self.roles:
            role = "planner"  # choosing a plan is planning: the planner's model by default
        return self.roles.get(role, self.main) if role else self.main

    def chain(self, purpose: str) -> list[Model]:
        """The model for ``purpose``, then each fallback that is another model."""
        first = self.for_purpose(purpose)
        chain = [first]
        for model in self.fallbacks:
            if all(model is not m and _spec(model) != _spec(m) for m in chain):
                chain.append(model)
        return chain


def _spec(model: Model) -> tuple[Any, ...]:
    return (getattr(model, "provider", None), model.name, getattr(model, "base_url", None))


def fallback_reason(exc: BaseException) -> str | None:
    """Why a failed call goes to the next model (``rate_limited``, ``timeout``,
    ``unavailable``, ``error``), or None when no other model would do better (the run's
    budget is spent, say)."""
    if isinstance(exc, StepTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, ModelError):
        status = exc.fields.get("status")
        if status == 429:
            return "rate_limited"
        if exc.retryable:
            return "unavailable"
        return "error"
    if isinstance(exc, OSError):
        return "unavailable"
    return None
