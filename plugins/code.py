"""``code.python``: run Python in the sandbox and return its ``result``, output and files."""

from __future__ import annotations

import errno
from typing import Any

from dagentic import (
    ResourceLimitError,
    SandboxResult,
    StepTimeoutError,
    ToolContext,
    ToolError,
    hookimpl,
    open_sandbox,
    tool,
)
from pydantic import JsonValue

__all__ = ["python", "register_tools"]

_TAIL = 2000  # characters of stderr quoted in an error


@tool(name="code.python", side_effects="none", typical_latency=0.5, stateful=True)
async def python(
    code: str,
    context: ToolContext,
    vars: dict[str, JsonValue] | None = None,
    files: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run Python 3 code in an isolated sandbox (no network, limited time, memory and
    processes; numpy and pandas are available) to compute, calculate or transform data,
    and return the JSON value of its `result` variable, its stdout and stderr, and the files
    it wrote.

    Args:
        code: Python source. Assign a JSON value to a variable named `result` to return it.
        vars: JSON values bound as variables before the code runs.
        files: Input files placed in the working directory, by name, as text.

    Returns:
        dict: {result, stdout, stderr, files, backend}; result is the value of the code's
        `result` variable.
    """
    from dagentic import Settings, current_step_span  # on first call: loading plugins stays cheap

    settings = context.settings if context.settings is not None else Settings()
    sandbox = await open_sandbox(settings)
    try:
        outcome = await sandbox.run(code, vars=vars, files=files)
    except ValueError as exc:  # what cannot cross the boundary as JSON
        raise ToolError(f"code.python: {exc}") from exc
    span = current_step_span()  # the step's span, when the run is traced
    if span is not None:
        span.set_attributes(
            {
                "dagentic.sandbox.backend": outcome.backend,
                "dagentic.sandbox.exit_reason": outcome.exit_reason,
            }
        )
    _raise_for(outcome)
    return {
        "result": outcome.result,
        "stdout": outcome.stdout,
        "stderr": outcome.stderr,
        "files": [f.model_dump(exclude_none=True) for f in outcome.files],
        "backend": outcome.backend,
    }


def _raise_for(outcome: SandboxResult) -> None:
    """Turn a failed run into the error with the right failure mode."""
    if outcome.ok and outcome.result_error is None:
        return
    where = f"(sandbox: {outcome.backend})"
    tail = outcome.stderr[-_TAIL:].strip()
    if outcome.ok:  # the code ran, but its result could not come back
        message = (
            f"code.python: the code ran but its result cannot be returned: {outcome.result_error}"
        )
    else:
        message = f"code.python {outcome.exit_reason}: {outcome.detail}"
    if tail:
        message += f"\n{tail}"
    fields: dict[str, Any] = {"exit_reason": outcome.exit_reason, "backend": outcome.backend}
    if outcome.exit_reason == "timeout":
        raise StepTimeoutError(f"{message} {where}", **fields)
    exception = outcome.exception or {}
    if outcome.exit_reason in ("oom", "pids", "output_limit") or exception.get("errno") in (
        errno.ENOSPC,  # the disk limit
        errno.EFBIG,  # a file larger than the disk limit
        errno.EMFILE,
    ):
        raise ResourceLimitError(f"{message} {where}", **fields)
    raise ToolError(f"{message} {where}", **fields)


@hookimpl
def register_tools() -> list[Any]:
    return [python]
