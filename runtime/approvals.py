"""Approvals: who says yes before a step's tool runs, and what they are shown.

An approver (:class:`~dagentic.executor.Approver`) is asked before every call of a step
with ``approval: required``, with the call's resolved arguments. Here:

- :func:`call_approver`: how the executor asks one, telling it which ``foreach`` item a
  call is for when it takes an ``item`` keyword.
- :class:`TerminalApprover`: asks a person at the terminal, one call at a time in the
  whole process, each answer bound to the prompt it answers, the arguments shown whole.
- :func:`approve_all`: ``--yes``.
- The ``agent.approve`` policy for plans a model wrote (a model cannot ask for approval
  itself): :func:`gate_plan` marks the steps it gates, and :class:`PolicyApprover` refuses
  them, with the fix, when nothing can approve.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TextIO

import anyio
import anyio.from_thread
import anyio.to_thread

from .display import safe_json, safe_text
from .errors import PolicyBlockedError

if TYPE_CHECKING:
    from rich.console import Console

    from .executor import Approver
    from .graph import CompiledPlan
    from .tools import Tool

__all__ = [
    "LATER",
    "ApprovalPolicy",
    "PolicyApprover",
    "TerminalApprover",
    "approve_all",
    "approver_name",
    "call_approver",
    "gate_plan",
    "may_need_approval",
    "needs_approval",
]

ApprovalPolicy = Literal["writes", "all", "none"]
# An approver's third answer: not now. With a durable journal the call waits (the run ends
# ``waiting``) until `dagentic approve` or `deny` decides and `dagentic resume` goes on.
LATER: Literal["later"] = "later"
Answer = bool | Literal["later"]
Item = tuple[int, int]  # a foreach item: (index from 0, number of items)

# One prompt and its answer at a time in the whole process: parallel steps and foreach items
# wait here, so no answer is read by a prompt other than the one it was typed for.
_PROMPT = threading.Lock()
_POLL = 0.05  # seconds between looks at the lock, or at the terminal for an answer


async def approve_all(step_id: str, tool: Tool, args: dict[str, Any], **_: Any) -> bool:
    """Approve every call (``--yes``)."""
    return True


def _takes_item(approver: Any) -> bool:
    try:
        parameters = inspect.signature(approver).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: it gets the three arguments
        return False
    return any(p.name == "item" or p.kind is p.VAR_KEYWORD for p in parameters)


async def call_approver(
    approver: Approver, step_id: str, tool: Tool, args: dict[str, Any], item: Item | None
) -> Answer:
    """Ask ``approver`` about one call; ``item`` (which ``foreach`` item, as ``(index,
    count)``) goes to an approver that takes an ``item`` keyword, so approvers written for
    ``(step_id, tool, args)`` keep working. The answer: yes, no, or :data:`LATER`."""
    if _takes_item(approver):
        answer = await approver(step_id, tool, args, item=item)  # type: ignore[call-arg]
    else:
        answer = await approver(step_id, tool, args)
    return LATER if answer == LATER else bool(answer)


def approver_name(approver: Any) -> str:
    """Who an approver's decisions are recorded as: ``terminal:USER``, ``--yes``, or
    ``approver:NAME`` of the function or class."""
    inner = getattr(approver, "approver", None)  # a PolicyApprover asks another
    if inner is not None:
        return approver_name(inner)
    if isinstance(approver, TerminalApprover):
        import getpass

        return f"terminal:{getpass.getuser()}"
    if approver is approve_all:
        return "--yes"
    name = getattr(approver, "__qualname__", None) or type(approver).__qualname__
    return f"approver:{name}"


def _describe_call(step_id: str, item: Item | None) -> str:
    """``step 'x'``, and the foreach item: ``step 'x', item 1 (of 3, numbered from 0)``."""
    what = f"step '{safe_text(step_id, one_line=True)}'"
    if item is not None:
        what += f", item {item[0]} (of {item[1]}, numbered from 0)"
    return what


class TerminalApprover:
    """Asks a person at the terminal about each call, and only one call at a time.

    Every prompt in the process waits for the one before it to be answered (parallel steps
    and ``foreach`` items ask in turn). Before it reads an answer it drops whatever was
    typed before the prompt appeared, so a key pressed for an earlier prompt, or typed
    ahead, never answers this one. The prompt names the step and, for a ``foreach`` call,
    the item, and shows the resolved arguments whole, as indented JSON escaped for the
    terminal; arguments taller than the screen are shown whole too, with their length.

    Args:
        console: where prompts go (default: standard error).
        input: where answers are read (default: standard input). On a terminal, answers
            are read a line at a time, unbuffered, after typed-ahead input is dropped.
        pause: called around each prompt, e.g. to stop a live display meanwhile
            (:meth:`dagentic.progress.LiveProgress.paused`).
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        input: TextIO | None = None,
        pause: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        if console is None:
            from rich.console import Console

            console = Console(stderr=True, soft_wrap=True)
        self.console = console
        self.input = input
        self.pause = pause

    async def __call__(
        self, step_id: str, tool: Tool, args: dict[str, Any], *, item: Item | None = None
    ) -> bool:
        while not _PROMPT.acquire(blocking=False):  # waiting here can be cancelled
            await anyio.sleep(_POLL)
        try:
            return await anyio.to_thread.run_sync(self._ask, step_id, tool, args, item)
        finally:
            _PROMPT.release()

    def _ask(self, step_id: str, tool: Tool, args: dict[str, Any], item: Item | None) -> bool:
        from rich.text import Text

        anyio.from_thread.check_cancelled()  # the step ended while this call waited its turn
        what = _describe_call(step_id, item)
        shown = safe_json(args)
        lines = shown.count("\n") + 1
        effects = f"side effects: {tool.side_effects}"
        sent = [a for a in getattr(tool, "egress", None) or {} if args.get(a) is not None]
        if sent:
            effects += f"; sends {', '.join(sent)} off this machine"
        with self.pause() if self.pause is not None else nullcontext():
            console = self.console
            say = partial(console.print, soft_wrap=True)  # cut or wrapped by nothing
            say(
                Text.assemble(
                    ("approval: ", "bold yellow"),
                    safe_text(
                        f"{what} wants to call {tool.name} ({effects}) with these arguments:",
                        one_line=True,
                    ),
                )
            )
            say(Text(shown))
            if lines + 3 > console.height:
                say(
                    Text(
                        f"(the arguments above are {lines} lines, {len(shown)} characters, "
                        "all shown: scroll up to read them)",
                        style="yellow",
                    )
                )
            question = f"Run {what}? [y/n]: "
            while True:
                # Whatever was typed before the question appears does not answer it.
                self._drop_typed_ahead()
                say(Text(question, style="bold"), end="")
                console.file.flush()
                answer = self._read_line()
                if answer is None:  # end of input: nobody can say yes
                    say()
                    return False
                answer = answer.strip().lower()
                if answer in ("y", "yes"):
                    return True
                if answer in ("n", "no"):
                    return False
                say(Text("Please answer y or n.", style="yellow"))

    def _terminal(self) -> int | None:
        """The file descriptor answers are read from, if it is a terminal."""
        stream = self.input if self.input is not None else sys.stdin
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # not a file (a test's StringIO)
            return None
        return fd if os.isatty(fd) else None

    def _drop_typed_ahead(self) -> None:
        fd = self._terminal()
        if fd is not None:
            import termios

            termios.tcflush(fd, termios.TCIFLUSH)

    def _read_line(self) -> str | None:
        """One line of the answer; None at end of input."""
        fd = self._terminal()
        if fd is None:
            line = (self.input if self.input is not None else sys.stdin).readline()
            return line or None
        import select

        while True:
            anyio.from_thread.check_cancelled()  # the run ended: stop waiting
            ready, _, _ = select.select([fd], [], [], _POLL * 4)
            if ready:
                # Unbuffered: a terminal in line mode gives at most one line per read, so
                # nothing typed after it is kept for the next prompt.
                data = os.read(fd, 4096)
                return data.decode(errors="replace") if data else None


def may_need_approval(tool: Tool, policy: ApprovalPolicy) -> bool:
    """Whether ``policy`` may gate a call of ``tool`` in a model's plan: ``all`` every tool,
    ``none`` none, ``writes`` a tool that may write or send data out (its declared side
    effects are the most a call may do; a tool with an ``effects`` function may do less)."""
    if policy != "writes":
        return policy == "all"
    return (
        tool.side_effects == "write"
        or bool(getattr(tool, "egress", None))
        or getattr(tool, "effects", None) is not None
    )


def needs_approval(tool: Tool, args: dict[str, Any], policy: ApprovalPolicy) -> bool:
    """Whether ``policy`` gates this call: ``tool`` as the executor gives it to approvers,
    carrying what this call does (a ``sql.query`` SELECT reads, an INSERT writes).
    ``writes`` gates a call that writes, or sends an argument off the machine."""
    if policy != "writes":
        return policy == "all"
    egress = getattr(tool, "egress", None) or {}
    return tool.side_effects == "write" or any(args.get(a) is not None for a in egress)


def gate_plan(compiled: CompiledPlan, policy: ApprovalPolicy) -> CompiledPlan:
    """``compiled`` with ``approval: required`` on every tool step ``policy`` may gate (see
    :func:`may_need_approval`); the same plan if there is none. Which of their calls are
    asked about is decided per call (:class:`PolicyApprover`)."""
    from .graph import CompiledPlan

    gated = {
        sid
        for sid, spec in compiled.steps.items()
        if spec.tool is not None
        and spec.step.approval != "required"
        and may_need_approval(spec.tool, policy)
    }
    if not gated:
        return compiled
    steps = {
        sid: replace(spec, step=spec.step.model_copy(update={"approval": "required"}))
        if sid in gated
        else spec
        for sid, spec in compiled.steps.items()
    }
    plan = compiled.plan.model_copy(
        update={"steps": [steps[s.id].step for s in compiled.plan.steps]}
    )
    return CompiledPlan(plan, steps, compiled.order, compiled.outputs, compiled.file)


class PolicyApprover:
    """The approver of a model's plan under ``agent.approve``: a call the policy does not
    gate (a ``sql.query`` that only reads, under ``writes``) runs; any other is asked of
    ``approver``, or, when there is none, waits for a person (``can_wait``: the run has a
    durable journal) or is refused with ``policy_blocked`` and the fix."""

    def __init__(
        self, approver: Approver | None, policy: ApprovalPolicy, *, can_wait: bool = False
    ) -> None:
        self.approver = approver
        self.policy = policy
        self.can_wait = can_wait

    async def __call__(
        self, step_id: str, tool: Tool, args: dict[str, Any], *, item: Item | None = None
    ) -> Answer:
        if not needs_approval(tool, args, self.policy):
            return True
        if self.approver is not None:
            return await call_approver(self.approver, step_id, tool, args, item)
        if self.can_wait:
            return LATER
        if self.policy == "all":
            why = "it calls a tool"
        elif tool.side_effects == "write":
            why = f"this call of {tool.name} has side effects '{tool.side_effects}'"
        else:
            why = f"this call of {tool.name} sends data off this machine"
        raise PolicyBlockedError(
            f"step '{step_id}' of the model's plan needs approval (agent.approve is "
            f"'{self.policy}' and {why}), and nothing can approve it here: run `dagentic "
            "ask` on a terminal to be asked, pass --yes to approve every step, or set "
            'agent.approve = "none" to run such steps unasked',
            step_id=step_id,
            tool=tool.name,
            policy=self.policy,
        )
