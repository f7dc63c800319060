"""The process backend: bubblewrap namespaces plus rlimits, for machines without Docker.

Each run gets new user, pid, net, ipc, uts and mount namespaces, read-only binds of the
system's ``/usr``, a size-capped tmpfs as its work dir, an environment built from an
allowlist, and — when dagentic runs as root — an unprivileged uid first (the kernel ignores
RLIMIT_NPROC for root). The harness inside sets the rlimits; the whole process group is
killed at the wall-clock limit, and ``--die-with-parent`` ends it if dagentic dies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from typing import Any

import anyio
from dagentic import Limits, SandboxResult

from .common import SANDBOX_ENV, SANDBOX_PYTHON, harness_source, make_job, parse_report

__all__ = ["ProcessSandbox", "process_available"]

ISOLATION = "namespaces+rlimits"
GRACE = 3.0  # seconds the host waits past the wall-clock limit before killing
UNPRIVILEGED = (65534, 65534)  # nobody:nogroup
_TMP_SIZE = 16 * 2**20


async def process_available(settings: Any = None) -> str | None:
    """None when bubblewrap can run here, else why not."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (Debian: apt-get install bubblewrap)"
    if not os.path.exists(SANDBOX_PYTHON):
        return f"{SANDBOX_PYTHON} is missing (Debian: apt-get install python3)"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv is missing (Debian: util-linux), needed to drop root"
    return None


class ProcessSandbox:
    """Runs code under bubblewrap. Cheap to create; holds nothing between runs."""

    name = "process"

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    def command(self, limits: Limits) -> list[str]:
        prefix: list[str] = []
        if os.geteuid() == 0:
            uid, gid = UNPRIVILEGED
            prefix = [
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
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "sandbox",
            *binds,
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--size",
            str(int(limits.disk)),
            "--tmpfs",
            "/work",
            "--size",
            str(_TMP_SIZE),
            "--tmpfs",
            "/tmp",
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
        job = make_job(
            code,
            language,
            vars,
            files,
            limits,
            file_contents=file_contents,
            sweep=True,
            rlimit_nproc=True,
            rlimit_memory=True,
        )
        start = time.monotonic()
        process = await anyio.open_process(
            self.command(limits),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            # bwrap's own init (pid 1 inside) keeps the environment it was started with,
            # readable at /proc/1/environ: give it nothing of ours.
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        report = bytearray()
        diagnostics = bytearray()
        cap = 4 * int(limits.output_bytes) + 2**20  # the report holds both streams, files
        try:
            with anyio.move_on_after(limits.wall_time + GRACE) as deadline:
                assert process.stdin and process.stdout and process.stderr
                async with anyio.create_task_group() as group:
                    group.start_soon(_drain, process.stderr, diagnostics, 65536)
                    await process.stdin.send(job)
                    await process.stdin.aclose()
                    await _drain(process.stdout, report, cap)
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
            backend=self.name,
            isolation=ISOLATION,
            duration=duration,
            diagnostics=diagnostics.decode(errors="replace"),
        )

    async def aclose(self) -> None:
        return None


async def _drain(stream: Any, into: bytearray, cap: int) -> None:
    async for chunk in stream:
        if len(into) < cap:
            into += chunk[: cap - len(into)]


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
