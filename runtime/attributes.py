"""The names of dagentic's own span attributes: what the tracer writes and what
``dagentic trace`` and the run files read back (OpenTelemetry calls these semantic
conventions). They live apart from both sides so that neither imports the other."""

from __future__ import annotations

__all__ = ["FAILURE_MODE", "ROOT", "RUN_ID", "TOOL_EGRESS", "TOOL_SIDE_EFFECTS"]

RUN_ID = "dagentic.run_id"  # on a run's span: the run's id
ROOT = "dagentic.root"  # on the outermost dagentic span of a call tree: its run names the file
FAILURE_MODE = "dagentic.failure_mode"  # on a failed span: the failure mode
TOOL_SIDE_EFFECTS = "dagentic.tool.side_effects"  # on a tool call's span: what this call does
TOOL_EGRESS = "dagentic.tool.egress"  # on a tool call's span: the arguments it sends out
