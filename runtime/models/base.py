"""The one interface every model provider implements, and what a call returns."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import ModelError

__all__ = ["Message", "Model", "ModelError", "ModelReply", "Price", "parse_json"]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class ModelReply:
    """What one chat call returned, with its usage."""

    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    finish_reason: str | None = None
    structured: bool = field(
        default=False,
        metadata={"doc": "The provider constrained the output to the requested JSON schema."},
    )
    redacted: tuple[str, ...] = field(
        default=(),
        metadata={"doc": "What the outbound guardrails redacted from the prompt, by kind."},
    )


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    input: float = 0.0
    output: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


@runtime_checkable
class Model(Protocol):
    """An async chat model. ``schema`` asks for JSON output matching a JSON schema:
    providers that can constrain decoding (``supports_schema``) do so, the others are
    asked in the prompt and their output is parsed and repaired. ``max_tokens`` may lower
    the model's own reply limit, never raise it."""

    name: str
    supports_schema: bool

    async def chat(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ModelReply: ...

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes for this model (its own tokenizer where it has one)."""
        ...


FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_json(text: str) -> Any:
    """The JSON value in a model's text: as is, inside a ``` fence, or the outermost
    {...}; near-misses (trailing commas, single quotes, cut-off endings) are repaired.
    Raises ValueError when there is none."""
    import json_repair

    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if start != -1:
        candidates.append(text[start : end + 1] if end > start else text[start:])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    for candidate in candidates[1:] or candidates:
        repaired = json_repair.loads(candidate)
        if isinstance(repaired, dict | list) and repaired:
            return repaired
    raise ValueError(f"no JSON object in the model's reply: {text[:200]!r}")
