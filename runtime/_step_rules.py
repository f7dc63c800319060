"""When a failed call runs again, after how long, and what an untrusted source does to a
step's provenance: shared by a step's calls (:mod:`._pipeline`) and a sub-plan step's
runs (:mod:`._subrun`)."""

from __future__ import annotations

import random
from collections.abc import Iterable

from .errors import FailureMode, ToolError, failure_mode_of
from .plan import Retry
from .result import Provenance
from .tools import Tool

__all__ = ["NEVER_RETRIED", "backoff", "retryable", "tainted"]

NEVER_RETRIED = frozenset(
    {
        FailureMode.INVALID_ARGS,
        FailureMode.INVALID_TOOL,
        FailureMode.POLICY_BLOCKED,
        FailureMode.PLAN_INVALID,
        FailureMode.BUDGET_EXCEEDED,
        FailureMode.CANCELLED,
    }
)


def tainted(provenance: Provenance, sources: Iterable[str]) -> Provenance:
    found = tuple(sorted({*provenance.untrusted_from, *sources}))
    return provenance.model_copy(update={"trusted": False, "untrusted_from": found})


def retryable(exc: Exception, retry: Retry | None, tool: Tool) -> bool:
    mode = failure_mode_of(exc)
    if retry is None or mode in NEVER_RETRIED or mode not in retry.on:
        return False
    if isinstance(exc, ToolError):
        return exc.retryable
    # A tool that is not idempotent may have done its work before failing.
    return tool.idempotent


def backoff(retry: Retry | None, attempt: int) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random."""
    if retry is None:
        return 0.0
    delay = min(retry.max_backoff, retry.backoff * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)
