"""The names of dagentic's own span attributes: what the tracer writes and what
``dagentic trace`` and the run files read back (OpenTelemetry calls these semantic
conventions). They live apart from both sides so that neither imports the other."""

from __future__ import annotations

__all__ = ["FAILURE_MODE", "ROOT", "RUN_ID"]

RUN_ID = "dagentic.run_id"  # on a run's span: the run's id
ROOT = "dagentic.root"  # on the outermost dagentic span of a call tree: its run names the file
FAILURE_MODE = "dagentic.failure_mode"  # on a failed span: the failure mode
