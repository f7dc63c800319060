"""A plan run in a process of its own, for the fault tests of the durable journal
(tests/runtime/test_durable_faults.py): they kill it (``kill -9``, Ctrl-C), fill its disk,
resume it twice at once, and check that every side effect happened exactly once.

Run from the repository root::

    python -m tests.runtime.durable_driver --runs-dir DIR --effects FILE run RUN_ID
    python -m tests.runtime.durable_driver --runs-dir DIR --effects FILE resume RUN_ID
    python -m tests.runtime.durable_driver --runs-dir DIR status RUN_ID
    python -m tests.runtime.durable_driver serve      # the fork server (below)

``run`` starts the plan with the given run id, ``resume`` goes on with it
(:meth:`Executor.resume <dagentic.Executor.resume>`); both print ``status: STATUS`` (and
``error: MESSAGE``) and exit 0 when the run succeeded, 1 when it ended otherwise,
2 on another :class:`~dagentic.JournalError` (printed), 3 when the run to resume is not in
the journal (a kill before its first commit: run it again), 4 when it has finished already.

The side effects go to ``--effects``: ``fault.append`` writes its call's idempotency key
there, one line, unless the key is there already (``uses_idempotency_key=True``).

Faults it makes itself, at exact points: ``--kill-after-write N`` (SIGKILL right after its
Nth line, before the journal knows the call ended), ``--kill-after-event K`` (right after
the Kth journal event is queued), ``--kill-in-commit output`` (inside the transaction
that commits a large output, once a megabyte of it is in the write-ahead log) and
``--kill-in-commit events`` (while a commit after the first 2,000 events writes).

``serve`` is a fork server: it imports all of the above once, then per request (a JSON
line ``{"argv": [...], "out": PATH}`` on standard input) forks a child that runs the
command with its output in ``out``, answers ``{"pid": PID}`` at once and
``{"pid": PID, "code": CODE}`` when the child ended (CODE is -9 for a SIGKILL), one
request at a time. A trial of the fault tests starts several processes; each would pay
half a second of imports without it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run by path: the repository root is two folders up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import anyio
from dagentic import (
    Executor,
    JournalError,
    Journals,
    Plan,
    RunResult,
    Step,
    ToolContext,
    ToolRegistry,
    tool,
)
from dagentic.durable import open_journal

from tests.blind import blind_settings

# Exit codes.
SUCCEEDED, ENDED, JOURNAL_ERROR, NO_SUCH_RUN, FINISHED = 0, 1, 2, 3, 4

EFFECTS: Path | None = None  # where fault.append writes
KILL_AFTER_WRITE: int | None = None
_writes = 0


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


@tool(name="fault.append", side_effects="write", idempotent=False, uses_idempotency_key=True)
def append(ctx: ToolContext, note: Any = None) -> str:
    """Append this call's idempotency key to the effects file, unless it is there.

    Args:
        note: Ignored (a place for an expression to put something).
    """
    global _writes
    assert EFFECTS is not None
    key = ctx.idempotency_key
    if EFFECTS.exists() and key in EFFECTS.read_text().splitlines():
        return key  # done before a crash: not again
    fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{key}\n".encode())
    finally:
        os.close(fd)
    _writes += 1
    if KILL_AFTER_WRITE is not None and _writes >= KILL_AFTER_WRITE:
        _die()  # written, and the journal does not know yet
    return key


@tool(name="fault.plain", side_effects="write", idempotent=False)
async def plain(ctx: ToolContext, gate: str) -> str:
    """Append this call's key to the effects file (every time: no idempotency key), then
    take until ``gate`` exists to answer (a slow acknowledgement).

    Args:
        gate: The file to wait for after writing.
    """
    assert EFFECTS is not None
    fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.run_id}/{ctx.step_id}\n".encode())
    finally:
        os.close(fd)
    print("plain: written", flush=True)
    while not os.path.exists(gate):
        await anyio.sleep(0.01)
    return gate


@tool(name="fault.work", side_effects="read")
async def work(ms: float = 2.0) -> float:
    """Read something for a few milliseconds.

    Args:
        ms: How long.
    """
    await anyio.sleep(ms / 1000)
    return ms


@tool(name="fault.blob", side_effects="read")
def blob(size: int) -> str:
    """Random text of ``size`` characters (it does not compress).

    Args:
        size: Characters.
    """
    return base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]


@tool(name="fault.gate", side_effects="read")
async def gate(path: str) -> str:
    """Wait until ``path`` exists (says so on standard output first).

    Args:
        path: The file to wait for.
    """
    print("gate: waiting", flush=True)
    while not os.path.exists(path):
        await anyio.sleep(0.01)
    return path


TOOLS = ToolRegistry([append, plain, work, blob, gate])


class _CommitProxy:
    """The writer's connection, but its commit is where ``--kill-in-commit output`` kills
    the process: inside a transaction that has put 1 MiB or more in the write-ahead log
    (SQLite spills a large transaction's pages there before it commits)."""

    def __init__(self, conn: Any, wal: Path, start: int) -> None:
        self._conn, self._wal, self._start = conn, wal, start

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def commit(self) -> None:
        grew = _size(self._wal) - self._start
        if grew >= 1 << 20:
            print(f"killed inside a commit: {grew} bytes of it in the write-ahead log")
            _die()
        self._conn.commit()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _kill_in_commit(how: str) -> None:
    """``output``: SIGKILL inside the first transaction that put 1 MiB in the write-ahead
    log, before its commit. ``events``: once 2,000 events are committed, SIGKILL as soon as
    the next commit changes the write-ahead log (while it writes it, mostly)."""
    from dagentic.durable.store import INSERT_EVENT, RunStore

    original = RunStore._commit
    events, watching = [0], []

    def commit(self: Any, conn: Any, batch: list[tuple[int, str, Any]]) -> None:
        wal = Path(f"{self.path}-wal")
        if how == "output":
            original(self, _CommitProxy(conn, wal, _size(wal)), batch)
            return
        if events[0] >= 2000 and not watching:
            watching.append(True)
            _watch(wal)
        original(self, conn, batch)
        events[0] += sum(op[1] == INSERT_EVENT for op in batch)

    RunStore._commit = commit  # type: ignore[method-assign]


def _watch(wal: Path) -> None:
    def state() -> tuple[int, int]:
        try:
            info = wal.stat()
        except FileNotFoundError:
            return (0, 0)
        return (info.st_size, info.st_mtime_ns)

    start = state()

    def watch() -> None:
        while state() == start:
            time.sleep(0.0001)
        _die()

    threading.Thread(target=watch, daemon=True).start()


# -- plans ---------------------------------------------------------------------------------


def fault_plan() -> Plan:
    """40 steps: a chain of 20, a fan-out of 16, two foreach steps of 10 and 8 writes, and
    a join; 37 writes in all (:func:`expected_keys`)."""
    steps = [Step(id="start", tool="fault.work")]
    for i in range(1, 21):  # c1 .. c20, each after the one before; the odd ones write
        steps.append(
            Step(
                id=f"c{i}",
                tool="fault.append" if i % 2 else "fault.work",
                needs=[f"c{i - 1}" if i > 1 else "start"],
            )
        )
    for i in range(1, 17):  # f1 .. f16 after start, at once; the even ones write
        steps.append(
            Step(
                id=f"f{i}",
                tool="fault.append" if i % 2 == 0 else "fault.work",
                args={"ms": 1 + i % 4} if i % 2 else {"note": "${{ steps.start.output }}"},
                needs=["start"],
            )
        )
    steps += [
        Step(
            id="each",
            tool="fault.append",
            foreach=list(range(10)),
            max_parallel=3,
            args={"note": "${{ item }}"},
            needs=["c6"],
        ),
        Step(
            id="each2",
            tool="fault.append",
            foreach="${{ steps.each.output[:8] }}",
            max_parallel=2,
            args={"note": "${{ item }}"},
            needs=["f5"],
        ),
        Step(
            id="join",
            tool="fault.append",
            args={"note": "${{ len(steps.each2.output) }}"},
            needs=["c20", "each2", *(f"f{i}" for i in range(1, 17))],
        ),
    ]
    return Plan(name="faults", steps=steps, outputs={"last": "${{ steps.join.output }}"})


def big_plan() -> Plan:
    """A write, an output of 8 MB of random text (6 MB once compressed: one long commit),
    a write."""
    return Plan(
        name="big",
        steps=[
            Step(id="before", tool="fault.append"),
            Step(id="big", tool="fault.blob", args={"size": 8_000_000}, needs=["before"]),
            Step(
                id="after",
                tool="fault.append",
                args={"note": "${{ len(steps.big.output) }}"},
                needs=["big"],
            ),
        ],
    )


def events_plan() -> Plan:
    """A foreach of 3,000 reads: thousands of events in a few large commits, then a write."""
    return Plan(
        name="events",
        steps=[
            Step(id="before", tool="fault.append"),
            Step(
                id="many",
                tool="fault.work",
                foreach=list(range(3000)),
                max_parallel=64,
                args={"ms": 0},
                needs=["before"],
            ),
            Step(id="after", tool="fault.append", needs=["many"]),
        ],
    )


def disk_plan() -> Plan:
    """Twelve outputs of 300,000 random characters, each followed by a write: 3.6 MB,
    more than a 2 MiB disk holds."""
    steps = [Step(id="w0", tool="fault.append")]
    for i in range(1, 13):
        steps += [
            Step(id=f"b{i}", tool="fault.blob", args={"size": 300_000}, needs=[f"w{i - 1}"]),
            Step(id=f"w{i}", tool="fault.append", needs=[f"b{i}"]),
        ]
    return Plan(name="disk", steps=steps)


def gate_plan(gate_file: str) -> Plan:
    """Writes, then a step that waits for ``gate_file``, then more writes."""
    return Plan(
        name="gate",
        steps=[
            Step(id="a", tool="fault.append"),
            Step(id="e", tool="fault.append", foreach=[1, 2, 3], needs=["a"]),
            Step(id="g", tool="fault.gate", args={"path": gate_file}, needs=["e"]),
            Step(id="b", tool="fault.append", needs=["g"]),
            Step(id="f", tool="fault.append", foreach=[1, 2, 3], needs=["b"]),
        ],
    )


def plain_plan(gate_file: str) -> Plan:
    """A write with an idempotency key, then one without (which waits for ``gate_file``
    after writing), then another with."""
    return Plan(
        name="plain",
        steps=[
            Step(id="a", tool="fault.append"),
            Step(id="p", tool="fault.plain", args={"gate": gate_file}, needs=["a"]),
            Step(id="b", tool="fault.append", needs=["p"]),
        ],
    )


def make_plan(name: str, gate_file: str = "") -> Plan:
    if name == "gate":
        return gate_plan(gate_file)
    if name == "plain":
        return plain_plan(gate_file)
    return {"faults": fault_plan, "big": big_plan, "events": events_plan, "disk": disk_plan}[name]()


def expected_keys(plan: Plan, run_id: str) -> list[str]:
    """The idempotency keys of every fault.append call of ``plan`` (a foreach's items are
    its literal list, or the first 8 of ``each``: what :func:`fault_plan` spells)."""
    keys = []
    for step in plan.steps:
        if step.tool != "fault.append":
            continue
        if step.foreach is None:
            keys.append(f"{run_id}/{step.id}")
        else:
            count = len(step.foreach) if isinstance(step.foreach, list) else 8
            keys += [f"{run_id}/{step.id}/{i}" for i in range(count)]
    return keys


# -- the commands --------------------------------------------------------------------------


class _KillAfter:
    """A journal that SIGKILLs the process right after the Kth event (the durable
    journal, told first, has queued it)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def record(self, event: Any) -> None:
        self.count -= 1
        if self.count <= 0:
            _die()


async def _cancel_on_sigint(executor: Executor) -> None:
    """What ``dagentic run`` does with Ctrl-C: cancel the run, which returns its result."""
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            executor.cancel()
            return


def _report(result: RunResult) -> int:
    print(f"status: {result.status.value}", flush=True)
    if result.error is not None:
        print(f"error: {result.error.message}", flush=True)
        print(f"mode: {result.error.failure_mode}", flush=True)
    return SUCCEEDED if result.succeeded else ENDED


def main(argv: list[str] | None = None) -> int:
    global EFFECTS, KILL_AFTER_WRITE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=["run", "resume", "status", "serve"])
    parser.add_argument("run_id", nargs="?", default="")
    parser.add_argument("--runs-dir", type=Path, help="The journal's folder.")
    parser.add_argument("--effects", type=Path, help="The side-effect file.")
    parser.add_argument("--plan", default="faults", help="faults, big, events, disk, gate or plain")
    parser.add_argument("--gate", default="", help="The file the gate plan waits for.")
    parser.add_argument("--kill-after-write", type=int)
    parser.add_argument("--kill-after-event", type=int)
    parser.add_argument("--kill-in-commit", choices=["output", "events"])
    parser.add_argument(
        "--sigint",
        choices=["cancel", "raise"],
        default="cancel",
        help="cancel: Ctrl-C cancels the run (as `dagentic run` does); raise: Python's "
        "KeyboardInterrupt goes through the event loop",
    )
    parser.add_argument(
        "--wait-for", type=Path, help="Print 'ready', then start once this file exists."
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve()
    if args.runs_dir is None:
        parser.error("--runs-dir is required")
    EFFECTS, KILL_AFTER_WRITE = args.effects, args.kill_after_write
    settings = blind_settings(runs_dir=args.runs_dir)
    durable = open_journal(settings)
    assert durable is not None
    if args.command == "status":
        record = durable.store.run(args.run_id)
        print(f"status: {record.shown_status if record else 'absent'}", flush=True)
        return SUCCEEDED
    if args.kill_in_commit is not None:
        _kill_in_commit(args.kill_in_commit)
    journal: Any = durable
    if args.kill_after_event is not None:
        journal = Journals(durable, _KillAfter(args.kill_after_event))
    executor = Executor(TOOLS, settings=settings, journal=journal, tracing=None)
    if args.wait_for is not None:
        print("ready", flush=True)
        while not args.wait_for.exists():
            time.sleep(0.005)

    async def go() -> RunResult | JournalError:
        async with anyio.create_task_group() as group:
            if args.sigint == "cancel":
                group.start_soon(_cancel_on_sigint, executor)
            try:
                if args.command == "run":
                    plan = make_plan(args.plan, args.gate)
                    result: RunResult | JournalError = await executor.run(plan, run_id=args.run_id)
                else:
                    result = await executor.resume(args.run_id)
            except JournalError as exc:
                result = exc
            group.cancel_scope.cancel()
        return result

    try:
        outcome = anyio.run(go)
    except KeyboardInterrupt:
        record = durable.store.run(args.run_id)
        print(f"status: {record.status if record else 'absent'} (KeyboardInterrupt)", flush=True)
        return ENDED
    if isinstance(outcome, RunResult):
        return _report(outcome)
    print(f"error: {outcome.message}", flush=True)
    if outcome.message.startswith("there is no run"):
        return NO_SUCH_RUN
    if "already: there is nothing to resume" in outcome.message:
        return FINISHED
    return JOURNAL_ERROR


def serve() -> int:
    """The fork server (see the module's docstring)."""
    if threading.active_count() != 1:  # a fork copies one thread: nothing may run yet
        print(json.dumps({"error": "threads run before forking"}), flush=True)
        return 1
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: run the command, then exit as a process does
            code = 1
            try:
                fd = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
                sys.stdin.close()
                code = main(request["argv"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - shown in the child's output
                import traceback

                traceback.print_exc()
            finally:
                import atexit

                atexit._run_exitfuncs()  # the journal commits what is queued, as at exit
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "code": os.waitstatus_to_exitcode(status)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
