"""``memory.recall`` and ``memory.remember``: the long-term memory (``memory.*`` settings)
as tools. What steps remember keeps its provenance: text that carries data of untrusted
tools (a web page, say) is stored as ``untrusted:<tool>`` and shown to models as quoted
data; writing it at all needs ``allow_untrusted: true`` on the step, like any write."""

from __future__ import annotations

from typing import Annotated, Any

from dagentic import ToolContext, hookimpl, tool
from dagentic.memory import LongTermMemory, open_memory
from pydantic import Field

__all__ = ["recall", "register_tools", "remember"]

_OPEN: dict[str, LongTermMemory] = {}  # one per memory configuration, for the process


def _memory(context: ToolContext) -> LongTermMemory:
    from dagentic import Settings  # on first call: loading plugins stays cheap

    settings = context.settings if context.settings is not None else Settings()
    key = str(settings.memory.model_dump_json())
    memory = _OPEN.get(key)
    if memory is None:
        memory = _OPEN.setdefault(key, open_memory(settings))
    return memory


@tool(name="memory.recall", side_effects="read", trusted=False, typical_latency=0.3, stateful=True)
async def recall(
    query: Annotated[str, Field(min_length=1)],
    context: ToolContext,
    limit: Annotated[int, Field(ge=1, le=50)] = 5,
    trusted_only: bool = False,
) -> dict[str, Any]:
    """Recall remembered facts relevant to a query (best first).

    Args:
        query: What the facts should be about.
        limit: How many to return.
        trusted_only: Only facts from the user or the agent itself, none from tools or
            the web.

    Returns:
        dict: {items: [{id, text, provenance, score, updated_at}]}.
    """
    found = await _memory(context).recall(query, limit=limit, exclude_untrusted=trusted_only)
    return {
        "items": [
            {
                "id": r.item.id,
                "text": r.item.text,
                "provenance": r.item.provenance,
                "score": r.score,
                "updated_at": r.item.to_dict()["updated_at"],
            }
            for r in found
        ]
    }


@tool(
    name="memory.remember",
    typical_latency=0.5,
    side_effects="write",
    idempotent=False,
    uses_idempotency_key=True,
    stateful=True,
)
async def remember(
    text: Annotated[str, Field(min_length=1, max_length=4000)],
    context: ToolContext,
    importance: Annotated[float, Field(ge=0, le=1)] = 0.5,
    ttl_days: Annotated[float, Field(gt=0)] | None = None,
) -> dict[str, Any]:
    """Remember a fact for later runs. A fact already known is not stored twice; one that
    adds to or updates a remembered fact is merged into it.

    Args:
        text: The fact, as one or two plain sentences.
        importance: How much it matters, 0 to 1.
        ttl_days: Forget it after this many days.

    Returns:
        dict: {action: insert | merge | replace | ignore, reason, item: {id, text, ...},
        replayed: true when a resumed run called again and nothing was written}.
    """
    provenance = (
        f"untrusted:{','.join(context.untrusted_inputs)}"
        if context.untrusted_inputs
        else f"agent:{context.step_id}"
    )
    written = await _memory(context).remember(
        text,
        provenance=provenance,
        importance=importance,
        ttl=ttl_days * 86400 if ttl_days else None,
        key=context.idempotency_key,  # stored with the write: a resumed run writes once
    )
    return written.to_dict()


@hookimpl
def register_tools() -> list[Any]:
    return [recall, remember]
