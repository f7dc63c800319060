"""The tool-result cache: the output of a cacheable tool's call (``@tool(cacheable=...)``),
reused by a later call with the same arguments over the same data.

A call is cached when its tool says it may be, this call reads (its effects are not a
write), its step does not say ``cache: false``, and its tool's fingerprint function (if it
has one) gives a fingerprint. The key is the tool's name, the validated arguments and that
fingerprint; an entry lives for the step's ``cache`` duration, else the tool's
``cache_ttl`` (else until cleared). What the call marked untrusted comes back with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..threads import run_in_thread
from . import Cache, digest, open_cache

__all__ = ["Cached", "Lookup", "ToolCache"]


@dataclass(frozen=True, slots=True)
class Lookup:
    """Where one call's output is kept: its key, and how old it may be (seconds)."""

    key: str
    ttl: float | None


@dataclass(frozen=True, slots=True)
class Cached:
    """A kept output, and where its untrusted data came from."""

    output: Any
    untrusted: tuple[str, ...]


class ToolCache:
    """Looks up and keeps tool outputs in a :class:`~dagentic.cache.Cache`."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    @classmethod
    def from_settings(cls, settings: Any) -> ToolCache | None:
        """The tool-result cache of the settings; None when ``cache.enabled`` or
        ``cache.tools`` is false."""
        if not settings.cache.tools:
            return None
        cache = open_cache(settings)
        return cls(cache) if cache is not None else None

    def lookup(
        self, step: Any, tool: Any, args: dict[str, Any], side_effects: str, settings: Any
    ) -> Lookup | None:
        """Where this call's output is kept, or None when the call is not cached."""
        if not tool.cacheable or side_effects == "write" or step.cache is False:
            return None
        fingerprint = tool.cache_key(args, settings) if tool.cache_key is not None else ""
        if fingerprint is None:
            return None
        ttl = tool.cache_ttl if step.cache is None or step.cache is True else float(step.cache)
        return Lookup(digest(tool.name, args, fingerprint), ttl)

    async def get(self, lookup: Lookup) -> Cached | None:
        found = await run_in_thread(self.cache.get, "tool", lookup.key, lookup.ttl)
        if found is None:
            return None
        return Cached(found["output"], tuple(found["untrusted"]))

    async def put(self, lookup: Lookup, output: Any, untrusted: list[str]) -> None:
        value = {"output": output, "untrusted": list(untrusted)}
        await run_in_thread(self.cache.put, "tool", lookup.key, value, lookup.ttl)
