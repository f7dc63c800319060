"""The names of dagentic's own span attributes: what the tracer writes and what
``dagentic trace`` and the run files read back (OpenTelemetry calls these semantic
conventions). They live apart from both sides so that neither imports the other."""

from __future__ import annotations

__all__ = [
    "CACHE",
    "FAILURE_MODE",
    "FALLBACK_FROM",
    "FALLBACK_REASON",
    "GUARDRAIL",
    "RAY_BY_REFERENCE",
    "RAY_LOST",
    "RAY_NODE",
    "RAY_PID",
    "RAY_WORKER",
    "ROOT",
    "RUN_ID",
    "TOOL_EGRESS",
    "TOOL_SIDE_EFFECTS",
]

RUN_ID = "dagentic.run_id"  # on a run's span: the run's id
ROOT = "dagentic.root"  # on the outermost dagentic span of a call tree: its run names the file
FAILURE_MODE = "dagentic.failure_mode"  # on a failed span: the failure mode
TOOL_SIDE_EFFECTS = "dagentic.tool.side_effects"  # on a tool call's span: what this call does
TOOL_EGRESS = "dagentic.tool.egress"  # on a tool call's span: the arguments it sends out
CACHE = "dagentic.cache"  # on a chat or tool call's span: hit, miss or store
FALLBACK_FROM = "dagentic.fallback.from"  # on a chat span: the model that failed before
FALLBACK_REASON = "dagentic.fallback.reason"  # rate_limited, timeout, unavailable or error
GUARDRAIL = "dagentic.guardrail.redacted"  # on a chat span: what was redacted from the prompt
RAY_NODE = "dagentic.ray.node_id"  # on a step's span, and its task's: the Ray node it ran on
RAY_WORKER = "dagentic.ray.worker_id"  # the Ray worker that ran it
RAY_PID = "dagentic.ray.pid"  # the worker's process id
RAY_BY_REFERENCE = "dagentic.ray.by_reference"  # arguments fetched from the object store
RAY_LOST = "dagentic.ray.lost"  # an event on a step's span: a lost call run again, and why
