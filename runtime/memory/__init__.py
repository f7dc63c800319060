"""Layered memory: short-term context under a token budget (:mod:`.context`) and a
long-term store in DuckDB (:mod:`.store`) whose writes go through a policy
(:mod:`.policy`), with pluggable embeddings (:mod:`.embeddings`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.lowlevel import RunVar

from ..errors import DagenticError
from .context import ContextBuilder, ContextItem, model_summarizer
from .embeddings import Embedder, MiniLMEmbedder
from .policy import Decision, ModelPolicy, ThresholdPolicy, WritePolicy
from .store import KeyUsed, MemoryItem, MemoryStore, Recalled, Scope, tokenize

__all__ = [
    "ContextBuilder",
    "ContextItem",
    "Decision",
    "Embedder",
    "KeyUsed",
    "LongTermMemory",
    "MemoryItem",
    "MemoryStore",
    "MiniLMEmbedder",
    "ModelPolicy",
    "Recalled",
    "Scope",
    "ThresholdPolicy",
    "WritePolicy",
    "Written",
    "model_summarizer",
    "open_memory",
    "tokenize",
]

RETRIES = 5  # decisions retried when a concurrent writer changed the target first
_WRITE_LOCKS: RunVar[dict[str, anyio.Lock]] = RunVar("dagentic-memory-write-locks")


@dataclass(frozen=True, slots=True)
class Written:
    """What :meth:`LongTermMemory.remember` did. ``replayed``: nothing was done now, this
    is what an earlier call with the same idempotency key did."""

    action: str
    item: MemoryItem | None
    reason: str = ""
    replayed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "item": self.item.to_dict() if self.item else None,
            "replayed": self.replayed,
        }


class LongTermMemory:
    """Recall and careful writes over a :class:`MemoryStore`.

    ``scope`` is the default scope of writes and reads (e.g. ``Scope(agent="default")``).
    """

    def __init__(
        self,
        store: MemoryStore,
        policy: WritePolicy | None = None,
        *,
        scope: Scope | None = None,
        recall_limit: int = 5,
    ) -> None:
        self.store = store
        self.policy = policy or ThresholdPolicy()
        self.scope = scope or Scope()
        self.recall_limit = recall_limit

    async def recall(
        self,
        query: str,
        *,
        limit: int | None = None,
        scope: Scope | None = None,
        provenance: list[str] | None = None,
        exclude_untrusted: bool = False,
    ) -> list[Recalled]:
        return await self.store.recall(
            query,
            limit=limit or self.recall_limit,
            scope=scope or self.scope,
            provenance=provenance,
            exclude_untrusted=exclude_untrusted,
        )

    async def remember(
        self,
        text: str,
        *,
        provenance: str = "user",
        scope: Scope | None = None,
        importance: float = 0.5,
        ttl: float | None = None,
        key: str = "",
        model: Any = None,
    ) -> Written:
        """Decide (with the policy) and write ``text``; see :class:`Decision`.

        ``model``: the model a :class:`ModelPolicy` asks instead of its own (an agent
        passes its metered model, so the policy's calls count against the run's budgets
        and are traced with its other calls).

        ``key``: an idempotency key (:attr:`~dagentic.ToolContext.idempotency_key`). It is
        stored with the write, in the same transaction; a call with a key stored before
        writes nothing and returns what that call did (``replayed=True``), so a resumed
        run that calls again does not remember twice."""
        text = text.strip()
        if not text:
            raise DagenticError("memory: nothing to remember: the text is empty")
        scope = scope or self.scope
        async with self._write_lock():  # parallel steps decide one after another
            if key:
                earlier = await self._replay(key)
                if earlier is not None:
                    return earlier
            try:
                return await self._remember(text, provenance, scope, importance, ttl, key, model)
            except KeyUsed:  # stored meanwhile (another event loop or thread)
                earlier = await self._replay(key)
                if earlier is None:
                    raise
                return earlier

    async def _replay(self, key: str) -> Written | None:
        """What the call that stored ``key`` did, if one did."""
        found = await self.store.written(key)
        if found is None:
            return None
        action, reason, item = found
        return Written(action, item, reason, replayed=True)

    def _write_lock(self) -> anyio.Lock:
        """One writer at a time per memory file and event loop: two steps remembering the
        same fact at once must not both insert it."""
        try:
            locks = _WRITE_LOCKS.get()
        except LookupError:
            locks = {}
            _WRITE_LOCKS.set(locks)
        return locks.setdefault(str(self.store.path), anyio.Lock())

    async def _remember(
        self,
        text: str,
        provenance: str,
        scope: Scope,
        importance: float,
        ttl: float | None,
        key: str = "",
        model: Any = None,
    ) -> Written:
        policy = self.policy
        if model is not None and isinstance(policy, ModelPolicy):
            policy = ModelPolicy(model, policy.fallback)
        for _ in range(RETRIES):  # another event loop or thread may still write meanwhile
            neighbours = await self.store.recall(text, limit=5, scope=scope)
            decision = await policy.decide(text, neighbours)
            if decision.action == "insert":
                item = await self.store.insert(
                    text,
                    provenance=provenance,
                    scope=scope,
                    importance=importance,
                    ttl=ttl,
                    key=key,
                    reason=decision.reason,
                )
                return Written("insert", item, decision.reason)
            assert decision.target is not None
            if decision.action == "ignore":
                if key:  # nothing written, but a repeat answers the same
                    await self.store.record(key, "ignore", decision.reason, decision.target)
                return Written("ignore", decision.target, decision.reason)
            updated = await self.store.update(
                decision.target,
                decision.text or text,
                provenance=_less_trusted(decision.target.provenance, provenance),
                importance=importance,
                key=key,
                action=decision.action,
                reason=decision.reason,
            )
            if updated is not None:
                return Written(decision.action, updated, decision.reason)
        raise DagenticError(
            f"memory: gave up writing after {RETRIES} attempts: other writers "
            "kept changing the same items"
        )


def _less_trusted(old: str, new: str) -> str:
    """A merge of trusted and untrusted text is untrusted."""
    trusted = ("user",)
    if old in trusted or old.startswith("agent"):
        return new
    return old


def open_memory(
    settings: Any, model: Any = None, *, embedder: Embedder | None = None
) -> LongTermMemory:
    """The long-term memory the settings (``memory.*``) describe; with ``model`` and
    ``memory.policy = "model"`` the model decides writes."""
    config = settings.memory
    store = MemoryStore(
        Path(config.path), embedder or MiniLMEmbedder(), half_life_days=config.half_life_days
    )
    fallback = ThresholdPolicy(config.duplicate_similarity, config.related_similarity)
    policy: WritePolicy = (
        ModelPolicy(model, fallback)
        if (model is not None and config.policy == "model")
        else fallback
    )
    return LongTermMemory(
        store, policy, scope=Scope(agent=config.agent), recall_limit=config.recall_limit
    )
