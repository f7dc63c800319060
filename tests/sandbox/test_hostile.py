"""Hostile code against both sandbox backends (process = bubblewrap, docker = containers).

Each test asserts (a) the exit_reason (and exit_code where it means something), (b) that
the run returned within a time bound — the wall-clock limit plus a margin smaller than the
host-side grace, so the limit is enforced inside the sandbox, not by the host's fallback —
and (c) that the host is unaffected: the test's own checks, and ``host_guard`` below after
every test (no process with the test's token left on the host, no descendant of this
process, no container of ours running more than its harness, the host can still fork;
closing the Docker sandbox leaves no container of ours).

Documented behaviours (where the contract leaves a choice):

- Killing the harness: on both backends the harness is the sandbox's pid 1, which the
  kernel protects from signals sent inside its namespace: ``os.kill(os.getppid(),
  SIGKILL)``, ``os.kill(1, SIGKILL)`` and ``kill(-1)`` leave it running, and the run
  ends "ok".
- A background process that keeps the inherited stdout/stderr open keeps the run's output
  open: the harness now waits for it until the wall-clock limit ("timeout"; ending the run
  "ok" when the main process exits would be as good); one that closes them (a proper
  daemon) lets the run end "ok" at once. Either way it is killed before run() returns.
- /work, /tmp and /dev/shm are private, size-capped tmpfs mounts: writable inside,
  invisible outside. Nothing else is writable (read-only root on both backends).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import gc
import hashlib
import json
import os
import re
import secrets
import select
import socket
import subprocess
import textwrap
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from dagentic import FailureMode
from dagentic.isolation import Limits, SandboxResult
from dagentic.sandbox import bubblewrap, container
from dagentic.sandbox.bubblewrap import ProcessSandbox, process_available
from dagentic.sandbox.common import make_job, parse_report
from dagentic.sandbox.container import _OWNER as DOCKER_OWNER
from dagentic.sandbox.container import LABEL, OWNER_LABEL, DockerSandbox, _client, docker_available

pytestmark = pytest.mark.anyio

# Small limits keep the module fast: wall 2 s, CPU 1 s, memory 256 MiB, 32 pids, 64 KiB of
# output, 16 MiB of disk, 64 open files.
WALL, CPU, CAP, DISK, FILES = 2.0, 1.0, 64 * 2**10, 16 * 2**20, 64
BOUND = WALL + 2.0  # < wall_time + GRACE of either backend (3 s, 5 s)
TMP_CAP = max(bubblewrap._TMP_SIZE, container._TMP_SIZE)
ISOLATION = {"process": "namespaces+rlimits", "docker": "container"}


# -- fixtures and host checks ------------------------------------------------------------

LIMITS = Limits(
    wall_time=WALL,
    cpu_time=CPU,
    memory="256MiB",
    pids=32,
    output_bytes=CAP,
    disk=DISK,
    open_files=FILES,
)
POOL_SIZE = 1


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """asyncio only, module-scoped: the sandboxes below live for the module."""
    return "asyncio"


@pytest.fixture(scope="module", params=["process", "docker"])
async def sandbox(request: pytest.FixtureRequest, anyio_backend: str) -> AsyncIterator[Any]:
    """A sandbox of each backend. Neither is optional: an unavailable backend fails."""
    if request.param == "process":
        reason = await process_available()
        if reason is not None:
            pytest.fail(f"the process sandbox backend cannot run here: {reason}")
        sb: Any = ProcessSandbox(limits=LIMITS)
    else:
        reason = await docker_available()
        if reason is not None:
            pytest.fail(f"the docker sandbox backend cannot run here: {reason}")
        sb = DockerSandbox(limits=LIMITS, pool_size=POOL_SIZE)
        sb.warm()
    try:
        yield sb
    finally:
        await sb.aclose()
    if request.param == "docker":  # closing it removed every container it had
        assert our_containers() == []


@pytest.fixture
def token() -> str:
    """A unique token for this test: put it in code (argv, file names) to find its traces."""
    return "dgtok" + secrets.token_hex(8)


# -- looking at the host -------------------------------------------------------------------


def host_processes() -> dict[int, tuple[int, str, str]]:
    """Every live process on the host: pid -> (ppid, state, cmdline)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read().decode(errors="replace")
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry)] = (int(fields[1]), fields[0], cmdline)
    return found


def host_processes_with(text: str) -> list[str]:
    """Live (not zombie) host processes whose command line contains ``text``."""
    own = os.getpid()
    return [
        f"{pid}: {cmd[:200]}"
        for pid, (_, state, cmd) in host_processes().items()
        if text in cmd and state != "Z" and pid != own
    ]


def descendants(root: int) -> list[str]:
    """Live processes below ``root`` on the host."""
    table = host_processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        ppid, state, cmd = table[pid]
        if state != "Z":
            out.append(f"{pid} ({state}): {cmd[:200]}")
        todo += children.get(pid, [])
    return out


def wait_until_gone(probe: Any, timeout: float = 1.0) -> list[str]:
    """Poll ``probe()`` until it returns nothing or ``timeout`` passes; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        left = probe()
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def our_containers() -> list[dict[str, Any]]:
    """Sandbox containers this test process owns (the warm pool, and any leftover)."""
    client = _client()
    try:
        return client.api.containers(
            all=True, filters={"label": [LABEL, f"{OWNER_LABEL}={DOCKER_OWNER}"]}
        )
    finally:
        client.close()


def container_processes(container_id: str) -> list[list[str]]:
    client = _client()
    try:
        return client.api.top(container_id)["Processes"] or []
    except Exception:  # noqa: BLE001 - not running (yet, or any more)
        return []
    finally:
        client.close()


@pytest.fixture(autouse=True)
def host_guard(request: pytest.FixtureRequest, token: str) -> Iterator[None]:
    """After each test: the host is unaffected. Nothing the sandbox started runs on."""
    yield
    # Processes carrying this test's token (in argv or code) are gone.
    assert wait_until_gone(lambda: host_processes_with(token)) == []
    # The process backend leaves no descendant of this (the dagentic) process behind.
    assert wait_until_gone(lambda: descendants(os.getpid())) == []
    # The docker backend: no container of ours runs anything but its harness (warm ones
    # wait for a job; used ones, removed in the background, are winding down).
    if (
        "sandbox" in request.fixturenames
        and request.node.callspec.params.get("sandbox") == "docker"
    ):

        def busy() -> list[str]:
            return [
                f"{info['Id'][:12]}: {processes}"
                for info in our_containers()
                if info["State"] == "running"
                and len(processes := container_processes(info["Id"])) > 1
            ]

        assert wait_until_gone(busy, timeout=2.0) == []
    # The host can still start processes.
    assert subprocess.run(["true"], check=False, timeout=10).returncode == 0


async def run(
    sandbox: Any, code: str, *, bound: float = BOUND, **kwargs: Any
) -> tuple[SandboxResult, float]:
    """Run ``code``; check the time bound and that the result crosses as JSON."""
    code = textwrap.dedent(code)
    start = time.monotonic()
    with anyio.fail_after(bound + 15):  # a hung run fails the test instead of hanging it
        result = await sandbox.run(code, **kwargs)
    elapsed = time.monotonic() - start
    assert elapsed < bound, f"the run took {elapsed:.2f}s (bound {bound}s): {result!r}"
    assert result.backend == sandbox.name
    assert result.isolation == ISOLATION[sandbox.name]
    # Whatever the code did, the result is JSON (the CLI's --json, tool outputs).
    assert SandboxResult.model_validate_json(result.model_dump_json()) == result
    return result, elapsed


def daemon_code(token: str, *, keep_stdio: bool, action: str) -> str:
    """Code that double-forks (fork, setsid, fork) a grandchild carrying ``token``."""
    return textwrap.dedent(f"""
        import os, sys, time
        TOKEN = {token!r}
        LOOP = ("import time\\n"
                "while True:\\n"
                "    with open('/work/marker-' + {token!r}, 'a') as f:\\n"
                "        f.write('x')\\n"
                "    time.sleep(0.05)\\n")

        def daemon(path, argv):
            pid = os.fork()
            if pid == 0:
                os.setsid()
                if os.fork() == 0:
                    if not {keep_stdio!r}:
                        null = os.open('/dev/null', os.O_RDWR)
                        for fd in (0, 1, 2):
                            os.dup2(null, fd)
                    os.execv(path, argv)
                os._exit(0)
            os.waitpid(pid, 0)

        if {action!r} == 'marker':
            daemon(sys.executable, ['python3-' + TOKEN, '-c', LOOP])
        else:
            daemon('/bin/sleep', ['sleep-' + TOKEN, '1000'])
        time.sleep(0.3)
        alive = 0
        for p in os.listdir('/proc'):
            try:
                with open('/proc/%s/cmdline' % p, 'rb') as handle:
                    alive += TOKEN.encode() in handle.read()
            except OSError:
                pass
        result = {{'alive_inside': alive}}
    """)


# -- processes, threads, memory, CPU, time ---------------------------------------------------


@pytest.mark.parametrize("copies", ["fork-on", "sleep"])
async def test_fork_bomb_hits_the_pids_limit(sandbox: Any, copies: str) -> None:
    # fork-on: the classic bomb, every copy forks on. sleep: the copies sleep (holding the
    # output open), so the main process alone meets the limit and dies of it; the run is a
    # pids failure all the same, not a timeout (a shorter wall time keeps this fast).
    limits = None if copies == "fork-on" else Limits(**{**LIMITS.model_dump(), "wall_time": 1.0})
    result, _ = await run(
        sandbox,
        f"""
        import os, time
        while True:
            if os.fork() == 0 and {copies!r} == 'sleep':
                time.sleep(3600)
    """,
        limits=limits,
    )
    assert result.exit_reason == "pids", result
    assert result.exit_code == 1
    assert result.exception and result.exception["errno"] == errno.EAGAIN


FORK_BOMBS = {
    # The code catches the failed fork and ends well: the limit was hit all the same.
    "swallowed": """
        import os, time
        forked = 0
        while True:
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            forked += 1
        result = forked
    """,
    # Its copies fork on and die of it; the main process waits for the first and is fine.
    "in-children": """
        import os
        pid = os.fork()
        if pid == 0:
            while True:
                os.fork()
        os.waitpid(pid, 0)
        result = 'main process fine'
    """,
    # A shell that cannot fork any more gives up; the code carries on.
    "shell": """
        import subprocess
        result = subprocess.run(['/bin/sh', '-c', 'for i in $(seq 100); do sleep 60 & done'],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                timeout=30).returncode
    """,
    # Threads the code's own handler swallows (small stacks: memory is not what runs out).
    "threads-swallowed": """
        import threading, time
        threading.stack_size(256 * 1024)
        started = 0
        try:
            while True:
                threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
                started += 1
        except RuntimeError:
            pass
        result = started
    """,
}


@pytest.mark.parametrize("bomb", sorted(FORK_BOMBS))
async def test_a_fork_bomb_that_ends_well_still_reports_the_pids_limit(
    sandbox: Any, bomb: str
) -> None:
    limits = Limits(**{**LIMITS.model_dump(), "wall_time": 20.0, "cpu_time": 10.0})
    result, _ = await run(sandbox, FORK_BOMBS[bomb], limits=limits, bound=30.0)
    assert result.exit_reason == "pids", result
    assert result.detail == "the code hit the limit of 32 processes and threads"
    assert result.failure_mode() == FailureMode.RESOURCE_LIMIT


async def test_thread_bomb_hits_the_pids_limit(sandbox: Any) -> None:
    result, _ = await run(
        sandbox,
        """
        import threading, time
        while True:
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    """,
    )
    assert result.exit_reason == "pids", result
    assert result.exit_code == 1
    assert result.exception and result.exception["type"] == "RuntimeError"


async def test_memory_bomb_is_oom(sandbox: Any) -> None:
    result, _ = await run(
        sandbox,
        """
        hoard = []
        while True:
            hoard.append(b'x' * (8 << 20))
    """,
    )
    assert result.exit_reason == "oom", result
    if result.exception:  # the allocation failed (rlimit): the code's own MemoryError
        assert result.exception["type"] == "MemoryError"
        assert result.exit_code == 1
    else:  # the kernel's OOM killer ended it (cgroup)
        assert result.exit_code is None


async def test_cpu_spin_times_out(sandbox: Any) -> None:
    result, elapsed = await run(
        sandbox,
        """
        while True:
            pass
    """,
    )
    assert result.exit_reason == "timeout", result
    assert result.exit_code is None
    assert elapsed >= CPU * 0.9


async def test_stdin_is_at_eof_and_sleeping_forever_times_out(sandbox: Any) -> None:
    result, elapsed = await run(
        sandbox,
        """
        import os, sys, time
        start = time.monotonic()
        data = sys.stdin.read()
        raw = os.read(0, 100)
        print('stdin=%r raw=%r after=%.3f' % (data, raw, time.monotonic() - start),
              flush=True)
        time.sleep(3600)
    """,
    )
    assert result.exit_reason == "timeout", result
    assert result.exit_code is None
    assert elapsed >= WALL * 0.9
    line = result.stdout.strip()
    assert line.startswith("stdin='' raw=b'' after="), result.stdout
    assert float(line.rsplit("=", 1)[1]) < 0.5


async def test_ignoring_sigterm_still_times_out(sandbox: Any) -> None:
    result, elapsed = await run(
        sandbox,
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        print('ignoring', flush=True)
        time.sleep(3600)
    """,
    )
    assert result.exit_reason == "timeout", result
    assert result.exit_code is None
    assert result.stdout == "ignoring\n"
    assert elapsed >= WALL * 0.9


@pytest.mark.parametrize(
    ("action", "keep_stdio"),
    [
        ("marker", False),  # a proper daemon: closes stdio, writes a marker file every 50 ms
        ("sleep", True),  # sleeps, keeping the inherited stdout/stderr open
    ],
    ids=["marker-daemon", "sleeping-daemon-holding-stdio"],
)
async def test_double_forked_daemon_does_not_outlive_the_run(
    sandbox: Any, token: str, action: str, keep_stdio: bool
) -> None:
    limits = Limits(**{**LIMITS.model_dump(), "wall_time": 1.0}) if keep_stdio else None
    result, elapsed = await run(
        sandbox, daemon_code(token, keep_stdio=keep_stdio, action=action), limits=limits
    )
    # Checked at once: the daemon is gone when run() returns (or dying: a SIGKILLed
    # process may take the kernel some milliseconds to tear down).
    assert wait_until_gone(lambda: host_processes_with(token), timeout=0.2) == []
    if keep_stdio:
        # Its output is still open when the main process ends: the run ends "ok" if the
        # harness stops there, or "timeout" if it waits for the output (what it does now).
        assert result.exit_reason in ("ok", "timeout"), result
        if result.exit_reason == "timeout":
            assert elapsed >= 1.0 * 0.9
    else:
        assert (result.exit_reason, result.exit_code) == ("ok", 0), result
    if result.exit_reason == "ok":
        assert result.result == {"alive_inside": 1}  # it did run, inside
    if action == "marker":
        markers = [f for f in result.files if f.name == f"marker-{token}"]
        assert markers and markers[0].size > 0, result.files
    # Still gone a moment later (a process that slipped out would be running now).
    await anyio.sleep(0.3)
    assert host_processes_with(token) == []
    assert not Path(f"/work/marker-{token}").exists()


# -- output -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
async def test_infinite_output_hits_the_output_limit(sandbox: Any, stream: str) -> None:
    result, _ = await run(
        sandbox,
        f"""
        import sys
        while True:
            sys.{stream}.write('x' * 4096)
    """,
    )
    assert result.exit_reason == "output_limit", result
    assert result.exit_code is None
    text = getattr(result, stream)
    assert getattr(result, f"{stream}_truncated") is True
    assert 0 < len(text.encode()) <= CAP
    assert set(text) == {"x"}


@pytest.mark.parametrize("size", [CAP // 2, 16 * CAP], ids=["within-cap", "beyond-cap"])
async def test_huge_line_of_invalid_utf8_is_decoded_with_replacement(
    sandbox: Any, size: int
) -> None:
    result, _ = await run(
        sandbox,
        f"""
        import sys
        unit = b'\\xff\\xfe\\xc3(\\xed\\xa0\\x80ok'  # invalid starts, a surrogate, text
        line = (b'start:' + unit * ({size} // len(unit)))[:{size}] + b':end'
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
    """,
    )
    unit = b"\xff\xfe\xc3(\xed\xa0\x80ok"
    line = (b"start:" + unit * (size // len(unit)))[:size] + b":end"
    if size < CAP:
        assert result.exit_reason == "ok", result
        assert result.exit_code == 0
        assert result.stdout == line.decode("utf-8", errors="replace")
        assert not result.stdout_truncated
    else:
        assert result.exit_reason == "output_limit", result
        assert result.stdout_truncated
        assert result.stdout == line[:CAP].decode("utf-8", errors="replace")
        assert len(result.stdout.encode()) <= 3 * CAP  # each bad byte: one U+FFFD
    assert "\ufffd" in result.stdout
    assert result.stdout.startswith("start:")
    json.dumps(result.model_dump())  # plain json, not only pydantic's


@pytest.mark.parametrize(
    ("unit", "streams"),
    [
        (b"\x80", ("stdout",)),  # each byte: U+FFFD, 6 bytes as JSON
        (b"\x80", ("stderr",)),
        (b"\x01", ("stdout",)),  # each byte: \u0001, 6 bytes as JSON
        (b"\xf0\x9f\x98", ("stdout", "stderr")),  # truncated emoji, on both streams
    ],
    ids=["x80-stdout", "x80-stderr", "control-stdout", "broken-emoji-both"],
)
async def test_megabytes_of_non_utf8_output_hit_the_output_limit_and_are_cut(
    sandbox: Any, unit: bytes, streams: tuple[str, ...]
) -> None:
    # The default cap (1 MiB) and 2 MB of bytes whose JSON escapes are six times longer:
    # the report still fits, the output is cut, the limit named.
    cap = 2**20
    limits = Limits(**{**LIMITS.model_dump(), "output_bytes": cap, "wall_time": 20.0})
    result, _ = await run(
        sandbox,
        f"""
        import sys
        data = {unit!r} * (2_000_000 // {len(unit)})
        for stream in {streams!r}:
            getattr(sys, stream).buffer.write(data)
            getattr(sys, stream).flush()
    """,
        limits=limits,
        bound=30.0,
    )
    assert (result.exit_reason, result.exit_code) == ("output_limit", None), result
    assert result.detail == f"the code wrote more than {cap} bytes"
    first = streams[0]
    assert getattr(result, f"{first}_truncated") is True
    kept = (unit * (cap // len(unit) + 1))[:cap]
    assert getattr(result, first) == kept.decode("utf-8", errors="replace")
    json.dumps(result.model_dump())


@pytest.mark.parametrize(
    "code",
    [
        "result = {'text': 'lone surrogate \\udcff'}",
        "raise ValueError('bad byte \\udcff')",
        "open(b'name-\\xff.txt', 'w').write('x')",
    ],
    ids=["result", "exception", "file-name"],
)
async def test_code_controlled_text_never_breaks_the_json_result(sandbox: Any, code: str) -> None:
    # Lone surrogates (from surrogateescape'd bytes) are not UTF-8: they must be replaced
    # or refused at the boundary, never handed to the host as a result it cannot encode.
    result, _ = await run(sandbox, code)  # run() checks the JSON round trip
    assert result.exit_reason in ("ok", "error")


# -- disk and file descriptors ----------------------------------------------------------------


@pytest.mark.parametrize(("directory", "cap"), [("/work", DISK), ("/tmp", TMP_CAP)])
async def test_filling_the_disk_fails_with_enospc(
    sandbox: Any, token: str, directory: str, cap: int
) -> None:
    name = f"fill-{token}.bin"
    result, _ = await run(
        sandbox,
        f"""
        import os
        info = os.statvfs({directory!r})
        mounts = [line.split() for line in open('/proc/self/mounts')]
        result = {{'fstype': [m[2] for m in mounts if m[1] == {directory!r}][-1],
                   'size': info.f_blocks * info.f_frsize, 'written': 0}}
        chunk = b'\\xaa' * (1 << 20)
        with open(os.path.join({directory!r}, {name!r}), 'wb', buffering=0) as f:
            for _ in range(4 * {cap} >> 20):  # four times the cap
                result['written'] += f.write(chunk)
    """,
    )
    assert result.exit_reason == "error", result
    assert result.exit_code == 1
    assert result.exception and result.exception["errno"] == errno.ENOSPC, result.exception
    # The cap holds, and it is a tmpfs (memory, capped), not the host's disk.
    assert result.result["fstype"] == "tmpfs"
    assert result.result["size"] <= cap
    assert 0 < result.result["written"] <= cap
    if directory == "/work":
        assert [f.name for f in result.files] == [name]
        assert result.files[0].size <= cap
    # Nothing of it on the host.
    assert not Path(directory, name).exists()


WRITABLE = {"/work": DISK, "/tmp": TMP_CAP, "/dev/shm": TMP_CAP}  # place -> its cap


async def test_every_writable_place_is_capped_and_nothing_else_is_writable(
    sandbox: Any, token: str
) -> None:
    # Every mount point, and the usual places: write four times the largest cap into
    # each (bubblewrap's own / and /dev took a gigabyte each, once).
    places = ["/", "/dev", "/dev/shm", "/dev/mqueue", "/dev/pts", "/tmp", "/var/tmp",
              "/work", "/etc", "/run", "/home", "/root", "/usr", "/var", "/opt"]  # fmt: skip
    limits = Limits(**{**LIMITS.model_dump(), "wall_time": 30.0, "cpu_time": 20.0})
    result, _ = await run(
        sandbox,
        f"""
        import errno, os
        mounts = [line.split()[1] for line in open('/proc/self/mounts')]
        chunk = b'\\xaa' * (1 << 20)
        written = {{}}
        for place in sorted(set(places + mounts)):
            path = os.path.join(place, 'fill-{token}')
            written[place] = 0
            try:
                with open(path, 'wb', buffering=0) as handle:
                    for _ in range(4 * {max(WRITABLE.values())} >> 20):
                        written[place] += handle.write(chunk)
            except OSError as exc:
                written[place] = [written[place], errno.errorcode.get(exc.errno)]
            if os.path.lexists(path):
                os.unlink(path)  # the next place gets the memory back
        result = written
    """,
        vars={"places": places},
        limits=limits,
        bound=40.0,
    )
    assert (result.exit_reason, result.exit_code) == ("ok", 0), result
    for place, outcome in result.result.items():
        amount, error = outcome if isinstance(outcome, list) else (outcome, None)
        if place in WRITABLE:
            assert (error, 0 < amount <= WRITABLE[place]) == ("ENOSPC", True), (place, outcome)
        else:
            assert amount == 0, (place, outcome)
            assert error in ("EROFS", "EACCES", "EPERM", "ENOENT", "ENOTDIR", "EINVAL"), (
                place,
                outcome,
            )
    assert not Path(f"/fill-{token}").exists()


MEMORY_BESIDE_THE_HEAP = {
    # Files in memory, written (never mapped: RLIMIT_AS does not see them), kept open.
    "memfd": """
        import os
        held, total = [], 0
        while total < 1 << 30:
            fd = os.memfd_create('hoard')
            held.append(fd)
            for _ in range(15):
                total += os.write(fd, b'\\xaa' * (1 << 20))
    """,
    # SysV shared memory: attached one segment at a time, filled, detached; it stays.
    "sysv-shm": """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.shmat.restype = ctypes.c_void_p
        size = 32 << 20
        for _ in range(32):
            segment = libc.shmget(0, size, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
            if segment < 0:
                raise OSError(ctypes.get_errno(), 'shmget')
            address = libc.shmat(segment, None, 0)
            ctypes.memset(address, 0xAA, size)
            libc.shmdt(ctypes.c_void_p(address))
    """,
}


@pytest.mark.parametrize("kind", sorted(MEMORY_BESIDE_THE_HEAP))
async def test_memory_beside_the_heap_counts_against_the_memory_limit(
    sandbox: Any, kind: str
) -> None:
    # A gigabyte where RLIMIT_AS does not look; the limit is 256 MiB.
    limits = Limits(**{**LIMITS.model_dump(), "wall_time": 30.0, "cpu_time": 20.0})
    result, _ = await run(sandbox, MEMORY_BESIDE_THE_HEAP[kind], limits=limits, bound=40.0)
    assert result.exit_reason == "oom", result
    assert result.detail == "the code ran out of memory (limit 256 MiB)"
    after, _ = await run(sandbox, "result = 6 * 7")
    assert (after.exit_reason, after.result) == ("ok", 42)


def many_entries(place: str, make: str = "open(path, 'w').close()") -> str:
    """Code that makes up to 2M entries with 200-character names in ``place``."""
    return f"""
        import os
        for n in range(2_000_000):
            path = os.path.join({place!r}, '%09d' % n + 'x' * 190)
            {make}
    """


MEMORY_IN_FILES = {
    # Empty files and directories with long names: no data for a tmpfs's size to count,
    # but each inode and name is kernel memory, charged to the sandbox's memory cgroup.
    # What they hold outlives the code the OOM killer takes, and the harness after it can
    # be left no room for its report (the Docker backend then asks the engine why).
    "files-in-work": many_entries("/work"),
    "dirs-in-work": many_entries("/work", "os.mkdir(path)"),
    "files-in-tmp": many_entries("/tmp"),
    "files-in-dev-shm": many_entries("/dev/shm"),
    # One file larger than the memory limit and within the disk limit.
    "big-file-in-work": """
        with open('/work/big', 'wb', buffering=0) as handle:
            for _ in range(200):
                handle.write(b'\\xaa' * (1 << 20))
    """,
}


@pytest.mark.parametrize("kind", list(MEMORY_IN_FILES))
async def test_memory_used_up_by_files_is_oom_not_killed(sandbox: Any, kind: str) -> None:
    # A small memory limit runs out fast (a second or two); the disk would hold 256 MiB.
    limits = Limits(
        **{
            **LIMITS.model_dump(),
            "memory": "64MiB",
            "disk": "256MiB",
            "wall_time": 30.0,
            "cpu_time": 20.0,
        }
    )
    result, _ = await run(sandbox, MEMORY_IN_FILES[kind], limits=limits, bound=40.0)
    assert result.exit_reason == "oom", result
    assert result.detail == "the code ran out of memory (limit 64 MiB)", result
    assert result.exit_code is None, result
    after, _ = await run(sandbox, "result = 6 * 7")
    assert (after.exit_reason, after.result) == ("ok", 42)


@pytest.mark.parametrize(
    "code",
    [
        # One file far larger than the disk, all holes.
        "import os\nos.truncate(os.open('big', os.O_CREAT | os.O_WRONLY), 1 << 40)",
        "import os\nf = os.open('big', os.O_CREAT | os.O_WRONLY)\nos.pwrite(f, b'x', 1 << 40)",
        # Many files each as large as the disk allows, all holes: 1.6 GB to hash.
        "import os\nfor i in range(100):\n    open('sparse-%03d' % i, 'w').truncate(16 << 20)",
        # More entries than anyone lists, and a deep tree.
        "import os\nfor i in range(30000):\n    open('e%05d' % i, 'w').close()",
        "import os\nfor i in range(400):\n    os.mkdir('d')\n    os.chdir('d')\n"
        "open('leaf', 'w').close()",
    ],
    ids=["truncate-1tib", "pwrite-at-1tib", "sparse-files", "many-files", "deep-tree"],
)
async def test_what_the_code_leaves_in_the_work_dir_is_listed_within_bounds(
    sandbox: Any, code: str
) -> None:
    limits = Limits(**{**LIMITS.model_dump(), "wall_time": 30.0, "cpu_time": 20.0})
    result, _ = await run(sandbox, code, limits=limits, bound=40.0, file_contents=True)
    if "1 << 40" in code:  # refused at once: no file may pass the disk limit
        assert (result.exit_reason, result.exit_code) == ("error", 1), result
        assert result.exception and result.exception["errno"] == errno.EFBIG
        assert [(f.name, f.size) for f in result.files] == [("big", 0)]
    else:
        assert (result.exit_reason, result.exit_code) == ("ok", 0), result
        assert 0 < len(result.files) <= 100
        hashed = sum(f.size for f in result.files if f.sha256 is not None)
        assert hashed <= DISK
        assert sum(len(f.content or "") for f in result.files) <= 2 * CAP
    if "sparse" in code:
        assert len(result.files) == 100
        assert [f.sha256 for f in result.files[:1]] == [hashlib.sha256(bytes(16 << 20)).hexdigest()]
        assert result.files[-1].sha256 is None  # past the budget: by size only
        assert result.files[-1].size == 16 << 20
    if "deep" in code:
        assert [f.name for f in result.files] == ["d/" * 400 + "leaf"]


async def test_exhausting_file_descriptors_fails_with_emfile(sandbox: Any) -> None:
    result, _ = await run(
        sandbox,
        """
        import os
        result = {'opened': 0}
        fds = []
        while True:
            fds.append(os.open('/dev/null', os.O_RDONLY))
            result['opened'] = len(fds)
    """,
    )
    assert result.exit_reason == "error", result
    assert result.exit_code == 1
    assert result.exception and result.exception["errno"] == errno.EMFILE, result.exception
    # The harness still reports: the result, the traceback, the exception.
    assert FILES - 10 <= result.result["opened"] < FILES
    assert "Too many open files" in result.stderr


# -- host secrets -----------------------------------------------------------------------------

SCAN = """
import os, stat, time
PREFIX = prefix.encode()
deadline = time.monotonic() + 0.5
found, scanned = [], 0

def check(data, where):
    at = data.find(PREFIX)
    while at != -1:
        found.append([where, data[at:at + 60].decode('ascii', 'replace')])
        at = data.find(PREFIX, at + 1)

for key, value in os.environ.items():
    check(('%s=%s' % (key, value)).encode(), 'os.environ')
for pid in os.listdir('/proc'):
    if pid.isdigit():
        for name in ('environ', 'cmdline'):
            try:
                with open('/proc/%s/%s' % (pid, name), 'rb') as handle:
                    check(handle.read(), '/proc/%s/%s' % (pid, name))
                    scanned += 1
            except OSError:
                pass
visible = [p for p in paths if os.path.lexists(p)]
for path in paths:
    try:
        with open(path, 'rb') as handle:
            check(handle.read(), path)
    except OSError:
        pass
done = set()
for top in ('/tmp', '/root', '/home', '/work', '/etc', '/var', '/run', '/srv', '/opt',
            '/mnt', '/'):
    for root, dirs, names in os.walk(top):
        if time.monotonic() > deadline:
            break
        if root in done or root in ('/proc', '/sys', '/dev'):
            dirs[:] = []
            continue
        done.add(root)
        for name in names:
            path = os.path.join(root, name)
            check(path.encode('utf-8', 'surrogateescape'), 'name')
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                with open(path, 'rb') as handle:
                    check(handle.read(65536), path)
                scanned += 1
            except OSError:
                pass
result = {'found': found, 'scanned': scanned, 'visible': visible}
print(found)
"""


async def test_host_secrets_are_not_readable(
    sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = "DAGENTIC-CANARY-"
    secret = secrets.token_hex(16)
    canary = prefix + secret
    name = secrets.token_hex(6)  # file names do not carry the secret
    planted = [
        tmp_path / "canary.txt",
        Path(f"/tmp/dagentic-canary-{name}"),
        Path(f"/root/.dagentic-canary-{name}"),
    ]
    monkeypatch.setenv(f"DAGENTIC_CANARY_{name.upper()}", canary)
    try:
        for path in planted:
            path.write_text(canary + "\n")
        result, _ = await run(
            sandbox, SCAN, vars={"prefix": prefix, "paths": [str(p) for p in planted]}
        )
    finally:
        for path in planted:
            path.unlink(missing_ok=True)
    assert result.exit_reason == "ok", result
    everything = result.model_dump_json()
    assert secret not in everything, result.result["found"]
    assert result.result["found"] == []
    assert result.result["visible"] == []
    assert result.result["scanned"] >= 20  # the scan did look around


# -- network ----------------------------------------------------------------------------------


def _listeners() -> tuple[socket.socket, socket.socket, int]:
    """A TCP listener and a UDP socket on the same free port of the host's 127.0.0.1."""
    for _ in range(20):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            tcp.close()
            udp.close()
            continue
        tcp.listen(8)
        tcp.setblocking(False)
        udp.setblocking(False)
        return tcp, udp, port
    raise RuntimeError("no free port for both TCP and UDP on 127.0.0.1")


async def test_no_network_egress(sandbox: Any) -> None:
    tcp, udp, port = _listeners()
    try:
        result, _ = await run(
            sandbox,
            """
            import socket
            out = {}
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(1.0)
            try:
                s.connect(('127.0.0.1', port))
                s.sendall(b'escaped')
                out['tcp'] = 'connected'
            except OSError as exc:
                out['tcp'] = type(exc).__name__
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.sendto(b'escaped', ('127.0.0.1', port))
                out['udp'] = 'sent'
            except OSError as exc:
                out['udp'] = type(exc).__name__
            try:
                out['dns'] = socket.getaddrinfo('example.com', 80)[0][4][0]
            except OSError as exc:
                out['dns'] = type(exc).__name__
            out['interfaces'] = sorted(name for _, name in socket.if_nameindex())
            result = out
        """,
            vars={"port": port},
        )
        # Nothing reached the host's listeners.
        readable, _, _ = select.select([tcp, udp], [], [], 0.3)
        assert readable == []
        with pytest.raises(BlockingIOError):
            tcp.accept()
        with pytest.raises(BlockingIOError):
            udp.recvfrom(100)
    finally:
        tcp.close()
        udp.close()
    assert result.exit_reason == "ok", result
    assert result.result["tcp"] != "connected"
    assert result.result["tcp"] == "ConnectionRefusedError"  # its own, empty loopback
    assert result.result["dns"] == "gaierror"
    assert result.result["interfaces"] == ["lo"]


# -- the filesystem ---------------------------------------------------------------------------


async def test_writing_outside_the_work_dir_never_reaches_the_host(
    sandbox: Any, token: str
) -> None:
    name = f"dagentic-escape-{token}"
    targets = [
        f"/usr/{name}",
        f"/etc/{name}",
        f"/{name}",
        f"/tmp/{name}",
        f"/var/tmp/{name}",
        f"/work/../{name}",
        f"/proc/1/root/tmp/{name}-p1",
        f"/proc/self/cwd/../{name}-cwd",
    ]
    try:
        result, _ = await run(
            sandbox,
            """
            import errno
            out = {}
            for path in targets:
                try:
                    with open(path, 'w') as handle:
                        handle.write('escaped')
                    out[path] = 'written'
                except OSError as exc:
                    out[path] = errno.errorcode.get(exc.errno, str(exc.errno))
            result = out
        """,
            vars={"targets": targets},
        )
        assert result.exit_reason == "ok", result
        outcome = result.result
        assert outcome[f"/usr/{name}"] in ("EROFS", "EACCES", "EPERM")
        assert outcome[f"/tmp/{name}"] == "written"  # a private tmpfs
        for path in (f"/etc/{name}", f"/{name}", f"/var/tmp/{name}"):  # a read-only root
            assert outcome[path] in ("EROFS", "EACCES", "EPERM", "ENOENT"), (path, outcome)
        # None of it is on the host.
        leaked = [
            p
            for p in (
                f"/usr/{name}",
                f"/etc/{name}",
                f"/{name}",
                f"/tmp/{name}",
                f"/var/tmp/{name}",
                f"/tmp/{name}-p1",
                f"/{name}-cwd",
                f"/work/{name}",
            )
            if os.path.lexists(p)
        ]
        assert leaked == []
    finally:
        for path in (
            f"/usr/{name}",
            f"/etc/{name}",
            f"/{name}",
            f"/tmp/{name}",
            f"/var/tmp/{name}",
            f"/tmp/{name}-p1",
            f"/{name}-cwd",
        ):
            with contextlib.suppress(OSError):
                os.unlink(path)


async def test_symlinks_in_produced_files_are_never_followed(sandbox: Any) -> None:
    result, _ = await run(
        sandbox,
        """
        import hashlib, os
        os.symlink('/etc/passwd', 'passwd')
        os.symlink('/etc/hostname', 'hostname')
        os.symlink('/etc', 'etcdir')
        os.symlink('/', 'rootdir')
        os.symlink('../etc/passwd', 'relative')
        os.makedirs('sub')
        os.symlink('/etc/passwd', 'sub/passwd')
        os.symlink('/etc', 'sub/etc')
        os.symlink(os.getcwd(), 'sub/loop')
        with open('real.txt', 'w') as handle:
            handle.write('regular')
        seen = {}
        for path in ('/etc/passwd', '/etc/hostname'):
            try:
                with open(path, 'rb') as handle:
                    seen[path] = hashlib.sha256(handle.read()).hexdigest()
            except OSError:
                seen[path] = None
        result = seen
    """,
        file_contents=True,
    )
    assert result.exit_reason == "ok", result
    assert [f.name for f in result.files] == ["real.txt"]
    assert result.files[0].content == "regular"
    host = {p: Path(p).read_bytes() for p in ("/etc/passwd", "/etc/hostname") if Path(p).exists()}
    forbidden = {hashlib.sha256(data).hexdigest() for data in host.values()}
    forbidden |= {h for h in result.result.values() if h}
    for produced in result.files:
        assert produced.sha256 not in forbidden
        for data in host.values():
            text = data.decode(errors="replace").strip()
            assert not text or text not in (produced.content or "")


# -- the harness, the host process ------------------------------------------------------------


@pytest.mark.parametrize("target", ["parent", "init", "all"])
async def test_killing_the_parent_ends_the_run_and_spares_the_host(
    sandbox: Any, token: str, target: str
) -> None:
    # The harness is the sandbox's pid 1 on both backends (see the module docstring).
    code = daemon_code(token, keep_stdio=False, action="sleep") + textwrap.dedent(f"""
        import signal
        pid = {{'parent': os.getppid(), 'init': 1, 'all': -1}}[{target!r}]
        try:
            os.kill(pid, signal.SIGKILL)
            print('sent', flush=True)
        except OSError as exc:
            print('refused', exc.errno, flush=True)
        time.sleep(0.3)
        print('survived', flush=True)
    """)
    result, _ = await run(sandbox, code)
    assert (result.exit_reason, result.exit_code) == ("ok", 0), result
    assert result.stdout.endswith("survived\n")
    # The host's dagentic process (this one) lives on; no daemon escaped; next run works.
    os.kill(os.getpid(), 0)
    assert wait_until_gone(lambda: host_processes_with(token), timeout=0.2) == []
    after, _ = await run(sandbox, "result = 6 * 7")
    assert (after.exit_reason, after.result) == ("ok", 42)


FORGED_REPORT = {
    "exit_code": 0,
    "exit_reason": "ok",
    "stdout": "",
    "stderr": "",
    "duration": 0.001,
    "result_json": '"forged"',
    "files": [{"name": "../../etc/forged", "size": 1, "sha256": "0" * 64}],
}
# The report as it once was (bare JSON), and as it is now with a made-up nonce.
FORGED_LINES = (
    json.dumps(FORGED_REPORT) + "\n" + "0" * 32 + " " + json.dumps(FORGED_REPORT) + "\n"
).encode()

# Each attack is the code's FIRST statement: it races the harness from the moment the
# code exists. Its outcome: the errno name it got, or "done".
ATTACKS = {
    "parent-stdout": "open('/proc/%d/fd/1' % __import__('os').getppid(), 'wb', 0).write(F)",
    "pid1-stdout": "open('/proc/1/fd/1', 'wb', 0).write(F)",
    "pid1-stderr": "open('/proc/1/fd/2', 'wb', 0).write(F)",
    "pid1-stdin": "__import__('os').read(__import__('os').open('/proc/1/fd/0', 0), 4096)",
    "pid1-fd-list": "__import__('os').listdir('/proc/1/fd')",
    "pid1-memory": "open('/proc/1/mem', 'rb').read(1)",
    "pid1-environ": "open('/proc/1/environ', 'rb').read()",
    "every-fd": """
        import os
        for pid in [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]:
            for fd in os.listdir('/proc/%s/fd' % pid):
                open('/proc/%s/fd/%s' % (pid, fd), 'wb', 0).write(F)""",
    "ptrace-attach": """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        for request in (16, 0x4206):  # PTRACE_ATTACH, PTRACE_SEIZE
            if libc.ptrace(request, 1, None, None) != 0:
                raise OSError(ctypes.get_errno(), 'ptrace')""",
    "pidfd-getfd": """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        stolen = libc.syscall(438, os.pidfd_open(1), 1, 0)  # pidfd_getfd(harness, 1)
        if stolen < 0:
            raise OSError(ctypes.get_errno(), 'pidfd_getfd')
        os.write(stolen, F)""",
    "kill-harness": """
        import os, signal
        for sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM, signal.SIGPIPE):
            os.kill(os.getppid(), sig)
            os.kill(1, sig)
        open('/proc/1/fd/1', 'wb', 0).write(F)""",
    "own-stdout-and-stderr": "__import__('os').write(1, F); __import__('os').write(2, F)",
    "proc-self-fd": "open('/proc/self/fd/1', 'wb', 0).write(F); open('/dev/stdout', 'wb', 0).write(F)",
    "racing-children": """
        import os, time
        for _ in range(4):
            if os.fork() == 0:
                end = time.monotonic() + 1.5
                while time.monotonic() < end:
                    for path in ('/proc/1/fd/1', '/proc/1/fd/2'):
                        try:
                            open(path, 'wb', 0).write(F)
                        except OSError:
                            pass
                os._exit(0)""",
}
REFUSED = {"EACCES", "EPERM"}
CAN_DO = {"own-stdout-and-stderr", "proc-self-fd", "racing-children", "kill-harness"}


def attack_code(attack: str) -> str:
    body = textwrap.indent(textwrap.dedent(ATTACKS[attack]).strip(), "    ")
    body = re.sub(r"\bF\b", lambda _: repr(FORGED_LINES), body)  # F: the forged lines
    return f"""try:
{body}
    outcome = 'done'
except OSError as exc:
    outcome = __import__('errno').errorcode.get(exc.errno, str(exc.errno))
print({FORGED_LINES.decode()!r}, end='')  # a forged report on its own stdout too
result = outcome
raise SystemExit(3)
"""


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_the_code_cannot_forge_a_report_from_its_first_statement(
    sandbox: Any, attack: str
) -> None:
    result, _ = await run(sandbox, attack_code(attack), bound=BOUND + 2)
    # The run is the code's own: refused or harmless attempts, then exit status 3.
    assert (result.exit_reason, result.exit_code) == ("error", 3), result
    assert result.detail == "the code exited with status 3"
    if attack == "kill-harness":  # the signals are ignored; the write refused
        assert result.result in REFUSED, result
    elif attack in CAN_DO:
        assert result.result == "done", result
    else:
        assert result.result in REFUSED, result
    assert result.files == []
    # What it wrote on its own streams is its output, nothing more.
    assert result.stdout.endswith(FORGED_LINES.decode()), result.stdout


def harness_report(**changes: Any) -> dict[str, Any]:
    """A report as the harness writes it (outputs in base64)."""
    return {
        "exit_code": 0,
        "exit_reason": "ok",
        "detail": None,
        "stdout": base64.b64encode(b"hello\n").decode(),
        "stderr": "",
        "duration": 0.01,
        "result_json": "42",
        "files": [{"name": "out/data.txt", "size": 2, "sha256": "0" * 64}],
        **changes,
    }


def line(nonce: bytes, report: dict[str, Any]) -> bytes:
    return nonce + b" " + json.dumps(report).encode() + b"\n"


SECRET = "refused the sandbox's report: it does not carry the run's secret (did the code write it?)"
BESIDES = "refused the sandbox's report: the sandbox wrote something besides its one report line"
MALFORMED = "refused the sandbox's report: it is malformed: "

# What reaches the host -> how the run must end (a detail, or its start).
REPORTS: dict[str, tuple[Any, str]] = {
    "bare-json": (lambda n: json.dumps(harness_report()).encode() + b"\n", SECRET),
    "guessed-nonce": (lambda n: line(b"0" * 32, harness_report()), SECRET),
    "forged-then-real": (
        lambda n: line(b"0" * 32, harness_report()) + line(n, harness_report()),
        SECRET,
    ),
    "two-reports": (lambda n: line(n, harness_report()) * 2, BESIDES),
    "trailing-junk": (lambda n: line(n, harness_report()) + b"junk", BESIDES),
    "no-newline": (lambda n: line(n, harness_report())[:-1], BESIDES),
    "too-large": (
        lambda n: line(n, harness_report(detail="x" * (7 * CAP + 4 * 2**20))),
        "refused the sandbox's report: the sandbox wrote more than a report can take",
    ),
    "not-json": (lambda n: n + b" {not json\n", "refused the sandbox's report: it is not JSON"),
    "unknown-exit-reason": (lambda n: line(n, harness_report(exit_reason="fine")), MALFORMED),
    "bad-base64": (lambda n: line(n, harness_report(stdout="@@@")), MALFORMED),
}
for bad in ("../../etc/forged", "/etc/passwd", "a/../../b", "", "a//b", "./x", "x/.", "a\0b"):
    REPORTS[f"file-name-{bad!r}"] = (
        lambda n, bad=bad: line(
            n, harness_report(files=[{"name": bad, "size": 1, "sha256": "0" * 64}])
        ),
        MALFORMED,
    )


@pytest.mark.parametrize("case", sorted(REPORTS))
def test_the_host_takes_nothing_but_one_report_with_the_runs_secret(case: str) -> None:
    job = make_job("x = 1", "python", None, None, LIMITS, file_contents=False)
    build, detail = REPORTS[case]
    result = parse_report(build(job.nonce), job, backend="process", isolation="x", duration=1.0)
    assert (result.exit_reason, result.exit_code) == ("error", None), result
    assert result.detail and result.detail.startswith(detail), result.detail
    assert (result.result, result.files, result.stdout) == (None, [], "")
    assert result.failure_mode() == FailureMode.TOOL_ERROR


def test_the_host_takes_the_harness_report() -> None:
    job = make_job("x = 1", "python", None, None, LIMITS, file_contents=False)
    result = parse_report(
        line(job.nonce, harness_report()), job, backend="process", isolation="x", duration=1.0
    )
    assert (result.exit_reason, result.exit_code, result.result) == ("ok", 0, 42)
    assert (result.stdout, [f.name for f in result.files]) == ("hello\n", ["out/data.txt"])


@pytest.mark.parametrize("then", ["exit", "linger"])
async def test_the_code_cannot_forge_the_harness_report(
    sandbox: Any, token: str, then: str
) -> None:
    # The harness's own stdout carries the report to the host. The code runs as the same
    # uid as the harness and may reach that stream through /proc/<harness>/fd/1: a report
    # written there must not be taken for the harness's, nor end the run early.
    code = daemon_code(token, keep_stdio=False, action="sleep") + textwrap.dedent("""
        import json
        forged = {'exit_code': 0, 'exit_reason': 'ok', 'stdout': 'FORGED', 'stderr': '',
                  'duration': 0.001, 'result_json': '"forged"',
                  'files': [{'name': 'forged.txt', 'size': 1, 'sha256': '0' * 64}]}
        try:
            with open('/proc/%d/fd/1' % os.getppid(), 'w') as report:
                report.write(json.dumps(forged) + '\\n')
            print('forged')
        except OSError as exc:
            print('refused', exc.errno)
        sys.stdout.flush()
        if THEN == 'linger':
            time.sleep(0.5)
        raise SystemExit(3)
    """).replace("THEN", repr(then))
    result, _ = await run(sandbox, code)
    assert result.stdout != "FORGED", result
    assert result.result != "forged"
    assert [f.name for f in result.files] == []
    assert (result.exit_reason, result.exit_code) == ("error", 3), result
    # And nothing of the run still runs once run() has returned.
    assert wait_until_gone(lambda: host_processes_with(token), timeout=0.2) == []


async def test_nothing_persists_from_one_run_into_the_next(sandbox: Any, token: str) -> None:
    first, _ = await run(
        sandbox,
        """
        import os
        for path in ('/work/persist-' + token, '/tmp/persist-' + token,
                     '/dev/shm/persist-' + token):
            try:
                with open(path, 'w') as handle:
                    handle.write('1')
            except OSError:
                pass
        os.environ['PERSIST_' + token] = '1'
        os.putenv('PERSIST_PUT_' + token, '1')
        pid = os.fork()
        if pid == 0:
            os.setsid()
            if os.fork() == 0:
                null = os.open('/dev/null', os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.execv('/bin/sleep', ['sleep-' + token, '1000'])
            os._exit(0)
        os.waitpid(pid, 0)
        result = 'planted'
    """,
        vars={"token": token},
    )
    assert (first.exit_reason, first.result) == ("ok", "planted"), first
    assert [f.name for f in first.files] == [f"persist-{token}"]

    second, _ = await run(
        sandbox,
        """
        import os
        alive = []
        for pid in os.listdir('/proc'):
            if pid.isdigit():
                try:
                    with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                        if token.encode() in handle.read():
                            alive.append(pid)
                except OSError:
                    pass
        result = {
            'work': os.listdir('/work'),
            'tmp': os.listdir('/tmp'),
            'shm': os.path.exists('/dev/shm/persist-' + token),
            'env': [k for k in os.environ if token in k],
            'processes': alive,
        }
    """,
        vars={"token": token},
    )
    assert second.exit_reason == "ok", second
    assert second.result == {"work": [], "tmp": [], "shm": False, "env": [], "processes": []}
    assert second.files == []
    assert host_processes_with(token) == []


# -- the contract: names, vars, files, result -------------------------------------------------


async def test_the_result_names_the_backend(sandbox: Any) -> None:
    result, _ = await run(sandbox, "print('hello')")
    assert (result.exit_reason, result.exit_code, result.stdout) == ("ok", 0, "hello\n")
    assert result.backend == sandbox.name
    assert result.isolation == ISOLATION[sandbox.name]
    assert result.failure_mode() is None


async def test_vars_are_bound(sandbox: Any) -> None:
    values = {"n": 21, "items": [1, "two", None, {"k": [True, 2.5]}], "text": "héllo ☃"}
    result, _ = await run(
        sandbox,
        """
        result = {'double': n * 2, 'items': items, 'text': text,
                  'types': [type(n).__name__, type(items).__name__, type(text).__name__]}
    """,
        vars=values,
    )
    assert result.exit_reason == "ok", result
    assert result.result == {
        "double": 42,
        "items": values["items"],
        "text": "héllo ☃",
        "types": ["int", "list", "str"],
    }


async def test_files_are_written_into_the_work_dir(sandbox: Any) -> None:
    blob = bytes(range(256))
    result, _ = await run(
        sandbox,
        """
        import os
        with open('input.txt') as handle:
            text = handle.read()
        with open('nested/dir/data.bin', 'rb') as handle:
            data = handle.read()
        with open('input.txt', 'a') as handle:
            handle.write('more\\n')
        with open('out.txt', 'w') as handle:
            handle.write(text.upper())
        result = {'cwd': os.getcwd(), 'text': text, 'data': list(data)}
    """,
        files={"input.txt": "hello\n", "nested/dir/data.bin": blob},
        file_contents=True,
    )
    assert result.exit_reason == "ok", result
    assert result.result == {"cwd": "/work", "text": "hello\n", "data": list(blob)}
    # New and changed files come back; an input left as it was does not.
    produced = {f.name: f for f in result.files}
    assert sorted(produced) == ["input.txt", "out.txt"]
    assert produced["out.txt"].content == "HELLO\n"
    assert produced["input.txt"].content == "hello\nmore\n"
    assert produced["out.txt"].sha256 == hashlib.sha256(b"HELLO\n").hexdigest()


async def test_result_is_returned_as_json(sandbox: Any) -> None:
    result, _ = await run(sandbox, "result = {'a': [1, 2.5, None, True, 'x'], 'b': {}}")
    assert result.exit_reason == "ok", result
    assert result.result == {"a": [1, 2.5, None, True, "x"], "b": {}}
    assert result.result_error is None


@pytest.mark.parametrize("value", ["{1, 2}", "object()", "float('nan')", "b'bytes'"])
async def test_a_non_json_result_gives_result_error(sandbox: Any, value: str) -> None:
    result, _ = await run(sandbox, f"result = {value}")
    assert result.exit_reason == "ok", result
    assert result.result is None
    assert result.result_error and "JSON" in result.result_error


async def test_runs_leave_no_unclosed_socket_behind(sandbox: Any) -> None:
    # The host process runs for long: every run must close what it opened (an unclosed
    # socket is a file descriptor held until the garbage collector finds it).
    gc.collect()  # what earlier tests left is not this test's business
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(3):
            result, _ = await run(sandbox, "print('hello')")
            assert result.exit_reason == "ok", result
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
