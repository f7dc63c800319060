"""The process backend: bubblewrap namespaces plus rlimits, for machines without Docker.

Each run gets new user, pid, net, ipc, uts and mount namespaces (no further user
namespaces inside), read-only binds of the system's ``/usr``, a read-only root and
``/dev``, size-capped tmpfs for its work dir (``disk``), ``/tmp`` and ``/dev/shm`` — the
only writable places — and an environment built from an allowlist. The harness is the
sandbox's pid 1. When dagentic runs as root, the run first enters a cgroup of its own
(memory and pids capped and counted by the kernel, see cgroup.py) and drops to an
unprivileged uid (the kernel ignores RLIMIT_NPROC for root). The harness inside sets the
rlimits; the whole process group is killed at the wall-clock limit, and
``--die-with-parent`` ends it if dagentic dies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from functools import cache
from typing import Any

import anyio
from dagentic import Limits, SandboxResult, run_in_thread

from .cgroup import RunCgroup, prune_cgroups
from .common import SANDBOX_ENV, SANDBOX_PYTHON, harness_source, make_job, parse_report

__all__ = ["ProcessSandbox", "process_available", "prune_process_leftovers"]

ISOLATION = "namespaces+rlimits"
GRACE = 3.0  # seconds the host waits past the wall-clock limit before killing
UNPRIVILEGED = (65534, 65534)  # nobody:nogroup
_TMP_SIZE = 16 * 2**20  # /tmp, and /dev/shm
EXTRA_PIDS = 2  # bubblewrap outside the sandbox, and the harness
NEEDED_OPTIONS = ("--disable-userns", "--as-pid-1", "--size", "--remount-ro")


async def process_available(settings: Any = None) -> str | None:
    """None when bubblewrap can run here, else why not."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (Debian: apt-get install bubblewrap)"
    if not os.path.exists(SANDBOX_PYTHON):
        return f"{SANDBOX_PYTHON} is missing (Debian: apt-get install python3)"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv is missing (Debian: util-linux), needed to drop root"
    usage = await run_in_thread(_bwrap_help)
    missing = [option for option in NEEDED_OPTIONS if option not in usage]
    if missing:
        return (
            f"bubblewrap is too old: it lacks {', '.join(missing)} (version 0.8 or later has them)"
        )
    return None


@cache
def _bwrap_help() -> str:
    try:
        return subprocess.run(
            ["bwrap", "--help"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


class ProcessSandbox:
    """Runs code under bubblewrap. Cheap to create; holds nothing between runs."""

    name = "process"

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    def command(self, limits: Limits, cgroup: RunCgroup | None = None) -> list[str]:
        prefix: list[str] = cgroup.enter() if cgroup is not None else []
        if os.geteuid() == 0:
            uid, gid = UNPRIVILEGED
            prefix += [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={gid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--",
            ]
        binds = ["--ro-bind", "/usr", "/usr"]
        for optional in ("/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime"):
            binds += ["--ro-bind-try", optional, optional]
        for link in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{link}"):
                binds += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        env: list[str] = ["--clearenv"]
        for key, value in SANDBOX_ENV.items():
            env += ["--setenv", key, value]
        return [
            *prefix,
            "bwrap",
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
            "--hostname",
            "sandbox",
            *binds,
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            *("--size", str(int(limits.disk)), "--tmpfs", "/work"),
            *("--size", str(_TMP_SIZE), "--tmpfs", "/tmp"),
            *("--size", str(_TMP_SIZE), "--tmpfs", "/dev/shm"),
            # Nothing else is writable: bubblewrap's root and /dev are tmpfs mounts as
            # large as half the host's memory, counted by no limit.
            *("--remount-ro", "/dev", "--remount-ro", "/"),
            "--chdir",
            "/work",
            *env,
            "--",
            SANDBOX_PYTHON,
            "-I",
            "-S",
            "-c",
            harness_source(),
        ]

    async def run(
        self,
        code: str,
        *,
        language: str = "python",
        vars: Mapping[str, Any] | None = None,
        files: Mapping[str, str | bytes] | None = None,
        limits: Limits | None = None,
        file_contents: bool = False,
    ) -> SandboxResult:
        limits = limits or self.limits
        cgroup = RunCgroup.create(limits, EXTRA_PIDS)
        try:
            return await self._run(code, language, vars, files, limits, file_contents, cgroup)
        finally:
            if cgroup is not None:
                with anyio.CancelScope(shield=True):
                    await run_in_thread(_release, cgroup)

    async def _run(
        self,
        code: str,
        language: str,
        vars: Mapping[str, Any] | None,
        files: Mapping[str, str | bytes] | None,
        limits: Limits,
        file_contents: bool,
        cgroup: RunCgroup | None,
    ) -> SandboxResult:
        job = make_job(
            code,
            language,
            vars,
            files,
            limits,
            file_contents=file_contents,
            rlimit_nproc=cgroup is None,  # the cgroup counts processes, and says so
            rlimit_memory=True,
        )
        start = time.monotonic()
        process = await anyio.open_process(
            self.command(limits, cgroup),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            # Nothing of dagentic's environment goes in (bubblewrap keeps the one it was
            # started with for itself).
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        report = bytearray()
        diagnostics = bytearray()
        try:
            with anyio.move_on_after(limits.wall_time + GRACE) as deadline:
                assert process.stdin and process.stdout and process.stderr
                async with anyio.create_task_group() as group:
                    group.start_soon(_drain, process.stderr, diagnostics, 65536)
                    await process.stdin.send(job.payload)
                    await process.stdin.aclose()
                    # One byte past a report's size tells that more was written.
                    await _drain(process.stdout, report, job.report_bytes + 1)
                await process.wait()
        finally:
            # Whatever happened (done, cancelled, timed out), nothing is left running.
            _kill_group(process.pid)
            with anyio.CancelScope(shield=True):
                await process.wait()
                await process.aclose()
        duration = time.monotonic() - start
        if deadline.cancelled_caught:
            return SandboxResult(
                exit_code=None,
                exit_reason="timeout",
                duration=duration,
                backend=self.name,
                isolation=ISOLATION,
                detail=f"the sandbox did not finish within {limits.wall_time + GRACE:g}s",
            )
        return parse_report(
            bytes(report),
            job,
            backend=self.name,
            isolation=ISOLATION,
            duration=duration,
            diagnostics=diagnostics.decode(errors="replace"),
            hits=cgroup.hits() if cgroup is not None else None,
        )

    async def aclose(self) -> None:
        return None


async def _drain(stream: Any, into: bytearray, cap: int) -> None:
    async for chunk in stream:
        if len(into) < cap:
            into += chunk[: cap - len(into)]


def _release(cgroup: RunCgroup) -> None:
    cgroup.kill()
    cgroup.remove()


async def prune_process_leftovers(settings: Any = None) -> list[str]:
    """Remove the run cgroups of dagentic processes that died (the sandboxes' processes
    died with them: ``--die-with-parent``)."""
    removed = await run_in_thread(prune_cgroups)
    return [f"process cgroup {path}" for path in removed]


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
