"""A plan run on the test cluster by a process of its own, with the durable journal, for
tests/ray/test_ray_durable.py: the test kills it (``kill -9``) mid-run and resumes.

    python tests/ray/ray_driver.py RUNS_DIR ADDRESS WORK_DIR run|resume RUN_ID

The plan: ``first`` appends a line to WORK_DIR/effects, then ``long`` writes its process
id to WORK_DIR/pid and waits a minute (the first time only). Prints the run's status and
exits 0 when it succeeded.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import anyio
from dagentic import Executor, ToolContext, ToolRegistry, tool
from ray import cloudpickle

from tests.blind import blind_settings

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@tool(name="probe.mark", side_effects="write", idempotent=False, uses_idempotency_key=True)
def mark(path: str, context: ToolContext) -> str:
    """Append this call's key to a file.

    Args:
        path: The file.
    """
    with open(path, "a") as file:
        file.write(context.idempotency_key + "\n")
    return context.idempotency_key


@tool(name="probe.hold", side_effects="none")
def hold(path: str) -> dict[str, object]:
    """Write this process's id to ``path``; wait a minute the first time.

    Args:
        path: The file.
    """
    first = not Path(path).exists()
    Path(path).write_text(str(os.getpid()))
    if first:
        time.sleep(60)
    return {"first": first}


def main() -> int:
    runs_dir, address, work, command, run_id = sys.argv[1:6]
    settings = blind_settings(runs_dir=Path(runs_dir))
    settings.execution.backend = "ray"
    settings.ray.address = address
    executor = Executor(ToolRegistry([mark, hold]), settings=settings)
    plan = {
        "version": 1,
        "name": "durable-on-ray",
        "steps": [
            {"id": "first", "tool": "probe.mark", "args": {"path": f"{work}/effects"}},
            {"id": "long", "tool": "probe.hold", "args": {"path": f"{work}/pid"}, "needs": "first"},
        ],
    }
    if command == "run":
        result = anyio.run(lambda: executor.run(plan, run_id=run_id))
    else:
        result = anyio.run(lambda: executor.resume(run_id))
    print("status:", result.status.value, {k: s.output for k, s in result.steps.items()})
    return 0 if result.status.value == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
