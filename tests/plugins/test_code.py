"""``code.python`` through real plan runs: the Executor, the installed tools, a real sandbox.

The process backend (bubblewrap) carries most tests; one runs on docker. Failures must
reach the step with the right failure mode and a message a person can act on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dagentic import Executor, FailureMode, Plan, RunResult, Settings, Step, StepStatus, load_tools
from dagentic.plugin_manager import close_sandboxes
from dagentic.settings import SandboxSettings

from tests.blind import blind_settings

pytestmark = pytest.mark.anyio

TOOLS = load_tools()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
async def _close_sandboxes() -> AsyncIterator[None]:
    """open_sandbox caches sandboxes process-wide (warm pools outlive runs): release them."""
    try:
        yield
    finally:
        await close_sandboxes()


def settings_with(**sandbox: Any) -> Settings:
    """Settings blind to dagentic.toml and DAGENTIC_* variables, with these sandbox ones."""
    return blind_settings(sandbox=SandboxSettings(**sandbox))


async def run_code(settings: Settings, code: str, **args: Any) -> RunResult:
    plan = Plan(
        name="code",
        inputs={"n": {"type": "integer", "default": 21}},
        steps=[Step(id="py", tool="code.python", args={"code": code, **args})],
        outputs={"answer": "${{ steps.py.output.result }}"},
    )
    return await Executor(TOOLS, settings=settings).run(plan)


REPORT = """\
import pandas as pd
frame = pd.DataFrame(rows)
print(frame.groupby('region')['amount'].sum().to_string())
with open('summary.csv', 'w') as f:
    f.write(frame.to_csv(index=False))
result = {'n': n * 2, 'regions': sorted(frame['region'].unique().tolist()),
          'note': open('note.txt').read()}
"""
ROWS = [
    {"region": "north", "amount": 10},
    {"region": "south", "amount": 5},
    {"region": "north", "amount": 2.5},
]
SUMMARY = b"region,amount\nnorth,10.0\nsouth,5.0\nnorth,2.5\n"


@pytest.mark.parametrize("backend", ["process", "docker"])
async def test_result_stdout_and_files_come_back_in_the_step_output(backend: str) -> None:
    result = await run_code(
        settings_with(backend=backend, pool_size=0),
        REPORT,
        vars={"n": "${{ inputs.n }}", "rows": ROWS},
        files={"note.txt": "from the plan"},
    )
    step = result.steps["py"]
    assert result.succeeded, step.error
    assert step.output == {
        "result": {"n": 42, "regions": ["north", "south"], "note": "from the plan"},
        "stdout": "region\nnorth    12.5\nsouth     5.0\n",
        "stderr": "",
        "files": [
            {
                "name": "summary.csv",
                "size": len(SUMMARY),
                "sha256": hashlib.sha256(SUMMARY).hexdigest(),
            }
        ],
        "backend": backend,
    }
    assert result.outputs == {
        "answer": {"n": 42, "regions": ["north", "south"], "note": "from the plan"}
    }


async def test_code_past_the_sandbox_wall_time_fails_the_step_with_timeout() -> None:
    settings = settings_with(backend="process", limits={"wall_time": 1})
    start = time.monotonic()
    result = await run_code(settings, "import time\ntime.sleep(30)")
    elapsed = time.monotonic() - start
    step = result.steps["py"]
    assert step.status is StepStatus.FAILED
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.TIMEOUT
    assert step.error.message == (
        "code.python timeout: the wall-clock limit of 1s passed (sandbox: process)"
    )
    assert elapsed < 6, elapsed


async def test_memory_bomb_fails_the_step_with_resource_limit() -> None:
    result = await run_code(settings_with(backend="process"), "hog = bytearray(8 * 2**30)")
    step = result.steps["py"]
    assert step.status is StepStatus.FAILED
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.RESOURCE_LIMIT
    assert step.error.message == (
        "code.python oom: the code ran out of memory (limit 512 MiB)\n"
        "Traceback (most recent call last):\n"
        '  File "main.py", line 1, in <module>\n'
        "MemoryError (sandbox: process)"
    )
    assert step.error.details == {"exit_reason": "oom", "backend": "process"}


async def test_raising_code_fails_with_tool_error_quoting_the_traceback() -> None:
    code = "def total(rows):\n    return sum(r['amount'] for r in rows)\n\ntotal([{}])\n"
    result = await run_code(settings_with(backend="process"), code)
    step = result.steps["py"]
    assert step.status is StepStatus.FAILED
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.TOOL_ERROR
    assert step.error.message == (
        "code.python error: the code exited with status 1\n"
        "Traceback (most recent call last):\n"
        '  File "main.py", line 4, in <module>\n'
        '  File "main.py", line 2, in total\n'
        '  File "main.py", line 2, in <genexpr>\n'
        "KeyError: 'amount' (sandbox: process)"
    )


async def test_error_message_quotes_only_the_tail_of_a_long_stderr() -> None:
    code = "import sys\nsys.stderr.write('noise ' * 1000 + '\\n')\nraise ValueError('the cause')"
    result = await run_code(settings_with(backend="process"), code)
    step = result.steps["py"]
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.TOOL_ERROR
    message = step.error.message
    assert message.startswith("code.python error: the code exited with status 1\n")
    assert message.endswith(
        'Traceback (most recent call last):\n  File "main.py", line 3, in <module>\n'
        "ValueError: the cause (sandbox: process)"
    )
    assert message.count("noise") < 1000
    assert len(message) < 2200


async def test_unavailable_backend_fails_the_step_as_policy_blocked() -> None:
    settings = settings_with(backend="docker", image="dagentic-sandbox:no-such-tag")
    result = await run_code(settings, "result = 1")
    step = result.steps["py"]
    assert step.status is StepStatus.FAILED
    assert step.error is not None
    assert step.error.failure_mode is FailureMode.POLICY_BLOCKED
    assert step.error.message == (
        "sandbox backend 'docker' is not available: the sandbox image "
        "dagentic-sandbox:no-such-tag is missing; build it with sandbox/image/build.sh"
    )
    assert step.attempts == 1
