"""The ready queue of a run: which step runs next, and the workers that run them.

Scheduling is a ready queue, not levels: the moment a step's last dependency finishes, the
step is queued and started as soon as one of the run's ``concurrency`` slots is free.
Workers, not a task per step, drain the queue: that keeps the cost of a step low and the
memory of a run bounded by its concurrency. A step whose dependency failed (or was skipped
by its ``when``) is skipped here, without running, and so are the steps waiting on it.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.abc
import anyio.lowlevel

from .errors import FailureMode
from .result import ErrorInfo, StepStatus

if TYPE_CHECKING:
    from ._active_run import ActiveRun, StepState

YIELD_EVERY = 0.001  # seconds a worker may run steps back to back without yielding
_PENDING, _SUCCEEDED, _FAILED, _SKIPPED, _CANCELLED, _WAITING = (
    StepStatus.PENDING,
    StepStatus.SUCCEEDED,
    StepStatus.FAILED,
    StepStatus.SKIPPED,
    StepStatus.CANCELLED,
    StepStatus.WAITING,
)


class Scheduler:
    """Starts the steps of ``run`` as their dependencies finish, at most ``concurrency``
    at a time."""

    def __init__(self, run: ActiveRun) -> None:
        self.run = run
        self.ready: deque[StepState] = deque(s for s in run.states.values() if not s.pending)
        self.workers = 0
        self.starting = 0  # workers started that have not taken a step yet
        self.limit = run.settings.concurrency
        self.tg: anyio.abc.TaskGroup | None = None

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Start workers in ``tg`` for the steps that need nothing."""
        self.tg = tg
        self._dispatch()

    def _dispatch(self, reserved: int = 0) -> None:
        """Start workers for ready steps no worker will pick up. A worker calling this
        from a finished step reserves one ready step for itself."""
        assert self.tg is not None
        run = self.run
        while (
            self.workers < self.limit
            and run.stop_status is None
            and len(self.ready) > self.starting + reserved
        ):
            self.workers += 1
            self.starting += 1
            self.tg.start_soon(self._worker, name="dagentic-worker")

    async def _worker(self) -> None:
        """Run ready steps until none is left."""
        self.starting -= 1
        run, ready = self.run, self.ready
        busy_since = time.perf_counter()
        try:
            while ready and run.stop_status is None:
                state = ready.popleft()
                run.event("scheduled", state)
                await self._run_step(state)
                if ready and time.perf_counter() - busy_since > YIELD_EVERY:
                    # Steps that never wait (no-op tools) must not starve the event loop.
                    await anyio.lowlevel.checkpoint()
                    busy_since = time.perf_counter()
        finally:
            self.workers -= 1

    async def _run_step(self, state: StepState) -> None:
        try:
            await self.run.pipeline.execute(state)
        except anyio.get_cancelled_exc_class():
            if state.status is _PENDING:
                state.status = _CANCELLED
            raise
        finally:
            if state.finished is None:
                state.finished = time.perf_counter()
            self._finish(state)

    def _finish(self, state: StepState) -> None:
        """``state`` ended: publish it, then queue (or skip) the steps it was the last
        dependency of."""
        run = self.run
        run.publish(state)
        if state.status is _FAILED and run.executor.fail_fast:
            run.stop(
                _FAILED,
                ErrorInfo(
                    failure_mode=FailureMode.CANCELLED,
                    message=f"cancelled: step '{state.spec.id}' failed and fail_fast is on",
                ),
            )
        if run.stop_status is not None or state.status in (_CANCELLED, _WAITING):
            return  # what waits on it stays pending (closed with the run's reason, if any)
        states = run.states
        done = [state]
        while done:
            finished = done.pop()
            clean = finished.status is _SUCCEEDED
            for sid in finished.spec.dependents:
                dependent = states[sid]
                dependent.pending -= 1
                if not clean:
                    dependent.unclean = True
                if dependent.pending:
                    continue
                dependent.waited_for = finished.spec.id  # its last dependency to finish
                reason = self._blocked(dependent) if dependent.unclean else None
                if reason is None:
                    self.ready.append(dependent)
                    continue
                dependent.status = _SKIPPED
                dependent.error = reason or None
                run.publish(dependent)
                done.append(dependent)
        self._dispatch(reserved=1)

    def _blocked(self, state: StepState) -> ErrorInfo | Literal[False] | None:
        """Why ``state`` cannot run: an upstream failure, ``False`` for a plain skip
        (a dependency was skipped by its `when`), or None when it can run."""
        plain_skip = False
        for dep in state.spec.deps:
            other = self.run.states[dep]
            if other.status in (_FAILED, _CANCELLED) or (
                other.error is not None and other.error.failure_mode is FailureMode.UPSTREAM_FAILED
            ):
                return ErrorInfo(
                    failure_mode=FailureMode.UPSTREAM_FAILED,
                    message=f"skipped because step '{dep}' {other.status.value}"
                    if other.status is not _SKIPPED
                    else f"skipped because step '{dep}' was skipped after a failure",
                )
            if other.status is _SKIPPED and not state.spec.step.run_if_skipped:
                plain_skip = True
        return False if plain_skip else None
