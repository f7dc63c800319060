"""A cgroup per run of the process backend: the kernel caps and counts the run's memory
(tmpfs, shared memory and memfds included, which RLIMIT_AS does not see) and processes
(a fork bomb whose failures the code swallows still shows in ``pids.events``).

Only root can make them (dagentic as root drops to an unprivileged uid for the code
itself); without them the process backend falls back to rlimits alone. Each run's cgroup
is a child of dagentic's own (cgroup v1: in the memory and pids hierarchies) or, on
cgroup v2, of ``/sys/fs/cgroup/dagentic-sandbox``; it is named after its owner's pid so
that what a killed owner left is found and removed (``prune_cgroups``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from dagentic import Limits

from .common import process_alive

__all__ = ["RunCgroup", "prune_cgroups"]

PREFIX = "dagentic-run-"
V2_PARENT = "dagentic-sandbox"
_ENTER = 'for d; do [ "$d" = -- ] && break; echo $$ > "$d/cgroup.procs" || exit 125; shift; done'
_numbers = itertools.count()


@dataclass(frozen=True)
class _Layout:
    """Where run cgroups go, and the files that limit and count them."""

    parents: tuple[Path, ...]
    limits: tuple[tuple[str, str], ...]  # (file, "memory" | "pids" | "0")
    events: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (file, key)


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """cgroup mounts: (fstype, root inside the hierarchy, mount point, super options)."""
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
                found.append((tail[0], fields[3], fields[4], set(tail[2].split(","))))
    return found


def _own(controller: str) -> str | None:
    """This process's cgroup path in the hierarchy of ``controller`` ("" for v2)."""
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _, names, path = line.rstrip("\n").split(":", 2)
            if controller in names.split(","):
                return path
    return None


def _inside(mount_root: str, mount_point: str, path: str) -> Path | None:
    if path != mount_root and not path.startswith(mount_root.rstrip("/") + "/"):
        return None
    return Path(mount_point, path[len(mount_root) :].lstrip("/"))


@cache
def _layout() -> _Layout | None:
    if os.geteuid() != 0:
        return None
    try:
        mounts = _mounts()
        v1: dict[str, Path | None] = {}
        for fstype, root, point, options in mounts:
            for controller in ("memory", "pids"):
                own = _own(controller)
                if fstype == "cgroup" and controller in options and own is not None:
                    v1[controller] = _inside(root, point, own)
        memory, pids = v1.get("memory"), v1.get("pids")
        if memory and pids:
            return _Layout(
                parents=tuple(dict.fromkeys((memory, pids))),
                limits=(
                    ("memory.limit_in_bytes", "memory"),
                    ("memory.memsw.limit_in_bytes", "memory"),
                    ("pids.max", "pids"),
                ),
                events={
                    "oom": ("memory.oom_control", "oom_kill"),
                    "pids": ("pids.events", "max"),
                },
            )
        for fstype, root, point, _ in mounts:
            controllers = Path(point, "cgroup.controllers")
            if fstype == "cgroup2" and root == "/" and controllers.exists():
                if not {"memory", "pids"} <= set(controllers.read_text().split()):
                    continue
                parent = Path(point, V2_PARENT)
                parent.mkdir(exist_ok=True)
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
                return _Layout(
                    parents=(parent,),
                    limits=(
                        ("memory.max", "memory"),
                        ("memory.swap.max", "0"),
                        ("pids.max", "pids"),
                    ),
                    events={"oom": ("memory.events", "oom_kill"), "pids": ("pids.events", "max")},
                )
    except (OSError, ValueError):
        return None
    return None


class RunCgroup:
    """The cgroup(s) of one run: made with its limits, entered by the command's first
    process (``enter()``), read for limits hit, emptied and removed."""

    def __init__(self, dirs: list[Path], layout: _Layout) -> None:
        self.dirs = dirs
        self._layout = layout

    @classmethod
    def create(cls, limits: Limits, extra_pids: int) -> RunCgroup | None:
        """A new cgroup with ``limits`` (memory, and pids plus ``extra_pids`` for what
        runs around the code), or None where dagentic cannot make one."""
        layout = _layout()
        if layout is None:
            return None
        _prune_once()
        values = {"memory": str(int(limits.memory)), "pids": str(limits.pids + extra_pids)}
        values["0"] = "0"
        name = f"{PREFIX}{os.getpid()}-{next(_numbers)}"
        made: list[Path] = []
        try:
            for parent in layout.parents:
                made.append(parent / name)
                made[-1].mkdir()
            for file, value in layout.limits:
                target = next((d / file for d in made if (d / file).exists()), None)
                if target is not None:
                    target.write_text(values[value])
        except OSError:
            cls(made, layout).remove()
            return None
        return cls(made, layout)

    def enter(self) -> list[str]:
        """A command prefix that moves the command into this cgroup before it starts."""
        return ["/bin/sh", "-c", _ENTER + '; shift; exec "$@"', "sh", *map(str, self.dirs), "--"]

    def hits(self) -> dict[str, bool]:
        """Which limits were hit: ``oom`` (the OOM killer ran), ``pids`` (a fork failed)."""
        found = {}
        for name, (file, key) in self._layout.events.items():
            found[name] = False
            for directory in self.dirs:
                with contextlib.suppress(OSError, ValueError):
                    for line in (directory / file).read_text().splitlines():
                        parts = line.split()
                        if len(parts) == 2 and parts[0] == key and int(parts[1]) > 0:
                            found[name] = True
        return found

    def kill(self) -> None:
        """SIGKILL every process in it, until none is left (a bounded number of rounds)."""
        for _ in range(100):
            pids = set()
            for directory in self.dirs:
                with contextlib.suppress(OSError, ValueError):
                    pids |= {int(p) for p in (directory / "cgroup.procs").read_text().split()}
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        """Remove it; a cgroup still busy (a process not yet reaped) is tried for a
        second, then left to ``prune_cgroups``."""
        deadline = time.monotonic() + 1.0
        for directory in self.dirs:
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)


def prune_cgroups() -> list[str]:
    """Remove the empty run cgroups whose owner process is gone; their paths."""
    layout = _layout()
    removed: list[str] = []
    for parent in layout.parents if layout else ():
        with contextlib.suppress(OSError):
            for child in parent.iterdir():
                owner = child.name.removeprefix(PREFIX).partition("-")[0]
                if (
                    child.name.startswith(PREFIX)
                    and owner.isdigit()
                    and not process_alive(int(owner))
                ):
                    with contextlib.suppress(OSError):
                        child.rmdir()
                        removed.append(str(child))
    return removed


@cache
def _prune_once() -> None:
    prune_cgroups()
