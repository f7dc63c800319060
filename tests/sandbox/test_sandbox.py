"""Behaviour (not security) of both sandbox backends: what goes in, what comes back.

Every test taking ``sb`` runs on the process backend (bubblewrap) and on the docker backend
(a DockerSandbox with a warm pool of one); both are real. The docker-only tests at the end
cover the warm pool, container clean-up and reaping; then ``open_sandbox`` and backend
selection. Hostile code is tests/sandbox/test_hostile.py's business.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import re
import secrets
import select
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import docker
import docker.errors
import pytest
from dagentic import FailureMode, Settings
from dagentic.isolation import (
    Limits,
    SandboxBackend,
    SandboxUnavailableError,
    select_sandbox_backend,
)
from dagentic.plugin_manager import close_sandboxes, open_sandbox
from dagentic.sandbox import cgroup
from dagentic.sandbox import container as docker_backend
from dagentic.sandbox.bubblewrap import ProcessSandbox, prune_process_leftovers
from dagentic.sandbox.container import (
    _OWNER,
    DEFAULT_IMAGE,
    LABEL,
    OWNER_LABEL,
    DockerSandbox,
    reap_leftovers,
)
from dagentic.settings import SandboxSettings

from tests.blind import blind_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["process", "docker"])
async def sb(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A real sandbox of each backend, closed afterwards."""
    sandbox: Any = ProcessSandbox() if request.param == "process" else DockerSandbox(pool_size=1)
    try:
        yield sandbox
    finally:
        await sandbox.aclose()


@pytest.fixture
def api() -> Any:
    client = docker.from_env(timeout=30)
    try:
        yield client.api
    finally:
        client.close()


def settings_with(**sandbox: Any) -> Settings:
    """Settings blind to dagentic.toml and DAGENTIC_* variables, with these sandbox ones."""
    return blind_settings(sandbox=SandboxSettings(**sandbox))


# -- results --------------------------------------------------------------------------------


async def test_result_round_trips_nested_json_with_unicode(sb: Any) -> None:
    value = {
        "name": "Zoë — 東京 🎉",
        "nested": {"list": [1, 2.5, None, True, False, "x"], "empty": {}, "deep": [[[{"k": []}]]]},
        "big": 2**53,
        "negative": -0.125,
    }
    outcome = await sb.run(f"result = {value!r}")
    assert outcome.exit_reason == "ok", outcome
    assert outcome.exit_code == 0
    assert outcome.result == value
    assert outcome.result_error is None
    assert outcome.backend == sb.name
    assert outcome.isolation == {"process": "namespaces+rlimits", "docker": "container"}[sb.name]


async def test_code_without_a_result_variable_returns_null_result(sb: Any) -> None:
    outcome = await sb.run("x = 1")
    assert (outcome.exit_reason, outcome.result, outcome.result_error) == ("ok", None, None)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (
            "result = {1, 2}",
            "result is not JSON-serializable: Object of type set is not JSON serializable",
        ),
        (
            "result = float('nan')",
            "result is not JSON-serializable: Out of range float values are not JSON compliant",
        ),
        (
            "result = object()",
            "result is not JSON-serializable: Object of type object is not JSON serializable",
        ),
    ],
    ids=["set", "nan", "object"],
)
async def test_result_that_is_not_json_gives_result_error_and_no_result(
    sb: Any, code: str, error: str
) -> None:
    outcome = await sb.run(code)
    assert outcome.exit_reason == "ok", outcome
    assert outcome.result is None
    assert outcome.result_error == error


async def test_result_larger_than_output_bytes_gives_result_error(sb: Any) -> None:
    limits = Limits(output_bytes=1000)
    fits = await sb.run("result = 'x' * 990", limits=limits)  # 992 bytes of JSON
    assert (fits.result, fits.result_error) == ("x" * 990, None)
    too_big = await sb.run("result = 'x' * 2000", limits=limits)
    assert too_big.exit_reason == "ok", too_big
    assert too_big.result is None
    assert too_big.result_error == "result is larger than 1000 bytes of JSON"


async def test_vars_are_bound_as_variables(sb: Any) -> None:
    rows = [{"region": "north", "amount": 1.5}, {"region": "süd", "amount": None}]
    outcome = await sb.run(
        "result = {'n': n * 2, 'rows': rows, 'flag': flag}",
        vars={"n": 21, "rows": rows, "flag": False},
    )
    assert outcome.result == {"n": 42, "rows": rows, "flag": False}


async def test_vars_that_are_not_json_are_rejected_before_running(sb: Any) -> None:
    with pytest.raises(ValueError) as caught:
        await sb.run("result = 1", vars={"s": {1, 2}})
    assert str(caught.value) == (
        "vars must be JSON values: Object of type set is not JSON serializable"
    )


# -- files ----------------------------------------------------------------------------------


async def test_input_files_are_written_and_not_listed_as_produced(sb: Any) -> None:
    files = {
        "notes.txt": "héllo\nwörld\n",
        "blob.bin": bytes([0, 255, 16, 128]),
        "data/2024/sales.csv": "region,amount\nnorth,1\n",
    }
    code = (
        "result = [open('notes.txt', encoding='utf-8').read(),\n"
        "          list(open('blob.bin', 'rb').read()),\n"
        "          open('data/2024/sales.csv').read()]"
    )
    outcome = await sb.run(code, files=files)
    assert outcome.exit_reason == "ok", outcome
    assert outcome.result == ["héllo\nwörld\n", [0, 255, 16, 128], "region,amount\nnorth,1\n"]
    assert outcome.files == []


async def test_input_file_the_code_changed_is_listed_as_produced(sb: Any) -> None:
    code = "open('log.txt', 'a').write('more\\n')"
    outcome = await sb.run(
        code, files={"log.txt": "first\n", "kept.txt": "same"}, file_contents=True
    )
    assert outcome.exit_reason == "ok", outcome
    [changed] = outcome.files
    assert (changed.name, changed.content, changed.encoding) == (
        "log.txt",
        "first\nmore\n",
        "utf-8",
    )
    assert changed.sha256 == hashlib.sha256(b"first\nmore\n").hexdigest()


PRODUCE = """\
import os
os.makedirs('out/deep', exist_ok=True)
with open('report.txt', 'w', encoding='utf-8') as f:
    f.write('Zoë earned 3 €\\n')
with open('out/deep/image.bin', 'wb') as f:
    f.write(bytes(range(256)))
with open('out/rows.json', 'w') as f:
    f.write('[1, 2]')
"""
PRODUCED = {
    "report.txt": "Zoë earned 3 €\n".encode(),
    "out/deep/image.bin": bytes(range(256)),
    "out/rows.json": b"[1, 2]",
}


async def test_produced_files_have_name_size_and_sha256_but_no_content_by_default(sb: Any) -> None:
    outcome = await sb.run(PRODUCE)
    assert outcome.exit_reason == "ok", outcome
    got = {f.name: f for f in outcome.files}
    assert set(got) == set(PRODUCED)
    for name, data in PRODUCED.items():
        assert got[name].size == len(data)
        assert got[name].sha256 == hashlib.sha256(data).hexdigest()
        assert (got[name].content, got[name].encoding) == (None, None)


async def test_file_contents_gives_text_as_utf8_and_binary_as_base64(sb: Any) -> None:
    outcome = await sb.run(PRODUCE, file_contents=True)
    assert outcome.exit_reason == "ok", outcome
    got = {f.name: f for f in outcome.files}
    assert set(got) == set(PRODUCED)
    assert (got["report.txt"].encoding, got["report.txt"].content) == ("utf-8", "Zoë earned 3 €\n")
    assert (got["out/rows.json"].encoding, got["out/rows.json"].content) == ("utf-8", "[1, 2]")
    image = got["out/deep/image.bin"]
    assert image.encoding == "base64"
    assert image.content is not None
    assert base64.b64decode(image.content) == bytes(range(256))


# -- how the code ends ----------------------------------------------------------------------


async def test_sys_exit_zero_is_ok(sb: Any) -> None:
    outcome = await sb.run("import sys\nresult = 'done'\nsys.exit(0)")
    assert (outcome.exit_reason, outcome.exit_code, outcome.result) == ("ok", 0, "done")


async def test_sys_exit_with_a_status_is_an_error_with_that_exit_code(sb: Any) -> None:
    outcome = await sb.run("import sys\nsys.exit(3)")
    assert (outcome.exit_reason, outcome.exit_code) == ("error", 3)
    assert outcome.detail == "the code exited with status 3"
    assert outcome.failure_mode() is FailureMode.TOOL_ERROR


async def test_sys_exit_with_a_message_is_an_error_with_the_message_on_stderr(sb: Any) -> None:
    outcome = await sb.run("import sys\nprint('before')\nsys.exit('cannot go on')")
    assert (outcome.exit_reason, outcome.exit_code) == ("error", 1)
    assert outcome.stderr == "cannot go on\n"
    assert outcome.stdout == "before\n"


async def test_exception_is_reported_with_type_message_and_errno(sb: Any) -> None:
    outcome = await sb.run("raise FileNotFoundError(2, 'no such report', 'r.csv')")
    assert (outcome.exit_reason, outcome.exit_code) == ("error", 1)
    assert outcome.exception == {
        "type": "FileNotFoundError",
        "message": "[Errno 2] no such report: 'r.csv'",
        "errno": errno.ENOENT,
    }
    plain = await sb.run("raise KeyError('region')")
    assert plain.exception == {"type": "KeyError", "message": "'region'", "errno": None}


async def test_traceback_on_stderr_starts_at_main_py_without_harness_frames(sb: Any) -> None:
    code = "def parse(x):\n    return int(x)\n\nparse('seven')\n"
    outcome = await sb.run(code)
    assert outcome.exit_reason == "error", outcome
    assert outcome.stderr.splitlines() == [
        "Traceback (most recent call last):",
        '  File "main.py", line 4, in <module>',
        '  File "main.py", line 2, in parse',
        "ValueError: invalid literal for int() with base 10: 'seven'",
    ]


async def test_stdout_and_stderr_are_kept_apart(sb: Any) -> None:
    code = (
        "import sys\nprint('out 1')\nprint('err 1', file=sys.stderr)\n"
        "sys.stdout.write('out 2\\n')\nsys.stderr.write('err 2\\n')"
    )
    outcome = await sb.run(code)
    assert outcome.exit_reason == "ok", outcome
    assert outcome.stdout == "out 1\nout 2\n"
    assert outcome.stderr == "err 1\nerr 2\n"
    assert (outcome.stdout_truncated, outcome.stderr_truncated) == (False, False)


# -- what run() refuses ---------------------------------------------------------------------


async def test_unsupported_language_is_a_value_error(sb: Any) -> None:
    with pytest.raises(ValueError) as caught:
        await sb.run("console.log(1)", language="javascript")
    assert str(caught.value) == "language 'javascript' is not supported; the sandbox runs python"


@pytest.mark.parametrize("name", ["../x", "/etc/x", "a/../../x"])
async def test_input_file_name_outside_the_work_dir_is_rejected_with_a_value_error(
    sb: Any, name: str
) -> None:
    # The caller's mistake, like an unsupported language: refused before anything starts,
    # not reported as a sandbox that died ("killed").
    with pytest.raises(ValueError) as caught:
        await sb.run("result = 1", files={name: "x"})
    assert str(caught.value) == (
        f"input file name {name!r} must be a relative path without '..', like 'data/rows.csv'"
    )


# -- limits ---------------------------------------------------------------------------------


async def test_smaller_wall_time_given_to_run_applies_to_that_run(sb: Any) -> None:
    assert sb.limits.wall_time == 30.0
    start = time.monotonic()
    outcome = await sb.run("import time\ntime.sleep(20)", limits=Limits(wall_time=1))
    elapsed = time.monotonic() - start
    assert outcome.exit_reason == "timeout", outcome
    assert outcome.exit_code is None
    assert outcome.detail == "the wall-clock limit of 1s passed"
    assert elapsed < 5, elapsed
    after = await sb.run("result = 'still works'")
    assert after.result == "still works"


# -- cancellation ---------------------------------------------------------------------------


def pids_named(comm: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().strip() == comm:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def container_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cgroup") as handle:
            match = re.search(r"[0-9a-f]{64}", handle.read())
    except OSError:
        return None
    return match.group(0) if match else None


def container_exists(api: Any, container: str) -> bool:
    try:
        api.inspect_container(container)
    except docker.errors.NotFound:
        return False
    return True


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await anyio.to_thread.run_sync(predicate):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g}s: {what}")
        await anyio.sleep(0.05)


async def test_run_cancelled_from_outside_returns_promptly_and_leaves_nothing_running(
    sb: Any, api: Any
) -> None:
    marker = "dgt" + secrets.token_hex(6)  # 15 characters: the longest a comm can be
    code = f"open('/proc/self/comm', 'w').write({marker!r})\nimport time\ntime.sleep(60)"
    seen: dict[str, Any] = {}

    async def watch() -> None:
        while not (pids := pids_named(marker)):
            await anyio.sleep(0.02)
        seen["pid"], seen["container"] = pids[0], container_of(pids[0])

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        start = time.monotonic()
        with anyio.move_on_after(4) as scope:
            await sb.run(code)
        elapsed = time.monotonic() - start
        group.cancel_scope.cancel()
    assert scope.cancelled_caught
    assert "pid" in seen, "the code never started sleeping"
    assert elapsed < 5, elapsed
    await wait_until(lambda: not pids_named(marker), 5, "the cancelled code is still running")
    if sb.name == "docker":
        container = seen["container"]
        assert container is not None
        await wait_until(
            lambda: not container_exists(api, container),
            5,
            f"the cancelled run's container {container[:12]} was not removed",
        )


# -- the docker backend's containers --------------------------------------------------------


def our_containers(api: Any, *, running: bool = False) -> set[str]:
    """Sandbox containers owned by this process (the owner label holds host and pid)."""
    return {
        info["Id"]
        for info in api.containers(
            all=not running, filters={"label": [LABEL, f"{OWNER_LABEL}={_OWNER}"]}
        )
    }


async def settle(api: Any) -> None:
    """Wait until no sandbox container of this process is left from earlier tests."""
    await wait_until(
        lambda: not our_containers(api),
        15,
        "containers of earlier tests in this process were not removed",
    )


async def wait_for_pool(api: Any, size: int) -> set[str]:
    """Wait until exactly ``size`` containers of ours run, then a moment for their harness
    to preload numpy/pandas; return their ids."""
    await wait_until(
        lambda: len(our_containers(api, running=True)) == size and len(our_containers(api)) == size,
        30,
        f"the warm pool did not reach {size} containers",
    )
    await anyio.sleep(1.0)
    return our_containers(api)


async def test_run_with_limits_other_than_the_pools_uses_a_cold_container_and_works(
    api: Any,
) -> None:
    await settle(api)
    sandbox = DockerSandbox(pool_size=1)
    try:
        sandbox.warm()
        [warm] = await wait_for_pool(api, 1)
        outcome = await sandbox.run("result = 6 * 7", limits=Limits(wall_time=7))
        assert (outcome.exit_reason, outcome.result) == ("ok", 42)
        await anyio.sleep(1.5)  # a used container would be gone by now (removed behind)
        assert container_exists(api, warm), "the run took the pool's container"
        assert api.inspect_container(warm)["State"]["Running"], "the run used the warm one"
        pooled = await sandbox.run("result = 'warm'")
        assert pooled.result == "warm"
        await wait_until(
            lambda: not container_exists(api, warm),
            5,
            "a run with the pool's limits did not take the warm container",
        )
    finally:
        await sandbox.aclose()


async def test_run_from_the_warm_pool_is_faster_than_a_cold_run(api: Any) -> None:
    await settle(api)
    warm = DockerSandbox(pool_size=1)
    cold = DockerSandbox(pool_size=0)
    warm_times, cold_times = [], []
    try:
        warm.warm()
        for _ in range(3):
            await wait_for_pool(api, 1)
            start = time.perf_counter()
            assert (await warm.run("result = 1 + 1")).result == 2
            warm_times.append(time.perf_counter() - start)
            await wait_for_pool(api, 1)  # refilled: the cold run has the machine to itself
            start = time.perf_counter()
            assert (await cold.run("result = 1 + 1")).result == 2
            cold_times.append(time.perf_counter() - start)
    finally:
        await warm.aclose()
        await cold.aclose()
    # Loose on purpose: a warm run skips creating and starting a container, the bulk of a
    # cold run, so it must be clearly faster, not just faster by noise.
    assert statistics.median(warm_times) < 0.75 * statistics.median(cold_times), (
        f"warm {[round(t * 1000) for t in warm_times]} ms, "
        f"cold {[round(t * 1000) for t in cold_times]} ms"
    )


async def test_pool_refills_after_a_run(api: Any) -> None:
    await settle(api)
    sandbox = DockerSandbox(pool_size=2)
    try:
        sandbox.warm()
        before = await wait_for_pool(api, 2)
        assert (await sandbox.run("result = 'x'")).result == "x"

        def refilled() -> bool:
            now = our_containers(api, running=True)
            return len(now) == 2 and len(now & before) == 1 and our_containers(api) == now

        await wait_until(refilled, 30, "the pool did not get back to two warm containers")
    finally:
        await sandbox.aclose()


async def test_aclose_removes_the_warm_pool(api: Any) -> None:
    await settle(api)
    sandbox = DockerSandbox(pool_size=2)
    sandbox.warm()
    await wait_for_pool(api, 2)
    await sandbox.aclose()
    assert our_containers(api) == set()


async def test_aclose_right_after_a_run_leaves_no_container_of_the_sandbox(api: Any) -> None:
    await settle(api)
    sandbox = DockerSandbox(pool_size=2)
    try:
        assert (await sandbox.run("result = 1")).result == 1  # cold; starts filling the pool
    finally:
        await sandbox.aclose()
    # aclose() is the end of the sandbox: nothing it started may appear or stay afterwards
    # (a process exiting now would leave such containers running).
    assert our_containers(api) == set()
    await anyio.sleep(2)
    assert our_containers(api) == set()


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def start_sleeper(api: Any, owner: str, *, start: bool = True) -> str:
    """A container labelled like a sandbox container of ``owner``, from the same image."""
    created = api.create_container(
        DEFAULT_IMAGE,
        command=["sleep", "60"],
        labels={LABEL: "1", OWNER_LABEL: owner},
        network_disabled=True,
        host_config=api.create_host_config(network_mode="none"),
    )
    if start:
        api.start(created["Id"])
    return created["Id"]


def remove_quietly(api: Any, container: str) -> None:
    try:
        api.remove_container(container, force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:  # another test process's reaping removes it
        if exc.status_code != 409:
            raise


def still_there(api: Any, containers: list[str], within: float = 30.0) -> list[str]:
    """Those of ``containers`` still there after ``within`` seconds (a removal another test
    process started may be under way)."""
    deadline = time.monotonic() + within
    left = [c for c in containers if container_exists(api, c)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [c for c in left if container_exists(api, c)]
    return left


async def test_reap_leftovers_removes_containers_whose_owner_died_and_keeps_live_ones(
    api: Any,
) -> None:
    host = socket.gethostname()
    orphans = [
        start_sleeper(api, f"{host}:{dead_pid()}"),  # the label of older versions
        start_sleeper(api, f"{host}:{dead_pid()}:12345"),
        # The owner's pid was reused by a live process that started at another time.
        start_sleeper(api, f"{host}:{os.getpid()}:1"),
        # Created, never started: the owner died between the two.
        start_sleeper(api, f"{host}:{dead_pid()}:12345", start=False),
    ]
    alive = start_sleeper(api, _OWNER)
    elsewhere = start_sleeper(api, f"some-other-host:{dead_pid()}:1")
    try:
        removed = reap_leftovers(api)
        # Gone, by this call or by a sandbox another test process started meanwhile (the
        # first container a sandbox starts reaps too), while the live ones stay.
        assert still_there(api, orphans) == []
        assert alive not in removed and elsewhere not in removed
        assert api.inspect_container(alive)["State"]["Running"]
        assert api.inspect_container(elsewhere)["State"]["Running"]
    finally:
        for container in (*orphans, alive, elsewhere):
            remove_quietly(api, container)


async def test_first_container_a_sandbox_starts_reaps_leftovers_of_dead_owners(api: Any) -> None:
    orphan = start_sleeper(api, f"{socket.gethostname()}:{dead_pid()}")
    sandbox = DockerSandbox(pool_size=0)
    try:
        assert (await sandbox.run("result = 'fresh'")).result == "fresh"
        assert not container_exists(api, orphan)
    finally:
        await sandbox.aclose()
        remove_quietly(api, orphan)


DYING_HARNESS = {
    # Stand-ins for the harness: each takes its job, then dies without a report.
    "oom": "import sys\nsys.stdin.buffer.read(1)\nhoard = []\n"
    "while True:\n    hoard.append(b'x' * (1 << 20))\n",
    "exit": "import os, sys\nsys.stdin.buffer.read(1)\nos._exit(3)\n",
}


@pytest.mark.parametrize("removed", [False, True], ids=["inspected", "removed"])
async def test_a_harness_the_oom_killer_took_is_oom_and_one_that_died_otherwise_killed(
    monkeypatch: pytest.MonkeyPatch, removed: bool
) -> None:
    # The container of a harness that died is removed at once (auto_remove): whether the
    # OOM killer ended it is read from the container while it is there, else from its
    # events ("removed": asked only once it is gone).
    sandbox = DockerSandbox(pool_size=0, limits=Limits(memory="64MiB", wall_time=10))
    if removed:
        ask = sandbox._oom_killed

        def once_removed(container: Any, since: float) -> bool:
            with contextlib.suppress(docker.errors.NotFound):
                sandbox._api.wait(container.id, timeout=10, condition="removed")
            assert not container_exists(sandbox._api, container.id)
            return ask(container, since)

        monkeypatch.setattr(sandbox, "_oom_killed", once_removed)
    try:
        for harness, reason, detail in [
            ("oom", "oom", "the code ran out of memory (limit 64 MiB)"),
            ("exit", "killed", "the sandbox ended without a report"),
        ]:
            monkeypatch.setattr(
                docker_backend, "harness_source", lambda h=harness: DYING_HARNESS[h]
            )
            start = time.monotonic()
            outcome = await sandbox.run("result = 1")
            elapsed = time.monotonic() - start
            assert (outcome.exit_reason, outcome.exit_code) == (reason, None), outcome
            assert outcome.detail == detail
            assert elapsed < 10, elapsed  # not the wall-clock limit: stopped, asked, done
    finally:
        await sandbox.aclose()


HOLDER = """
import sys, anyio
from dagentic.isolation import Limits
from dagentic.sandbox import container
from dagentic.sandbox.bubblewrap import ProcessSandbox

async def main(mode):
    if mode == 'process':
        sandbox = ProcessSandbox()
    else:
        sandbox = container.DockerSandbox(pool_size=2)
        sandbox.warm()
        api = container._client().api
        mine = {'label': [container.LABEL, container.OWNER_LABEL + '=' + container._OWNER]}
        while len(api.containers(filters=mine)) < 2:  # the pool is full, and waits
            await anyio.sleep(0.1)
    async with anyio.create_task_group() as group:
        if mode in ('running', 'process'):  # and one run sleeps in a container of its own
            group.start_soon(lambda: sandbox.run(
                'import os\\nos.execv("/bin/sleep", ["sleep-" + token, "3600"])',
                vars={'token': sys.argv[2]}, limits=Limits(wall_time=5)))
            await anyio.sleep(2)
        print(container._OWNER, flush=True)
        await anyio.sleep(3600)

anyio.run(main, sys.argv[1])
"""


def start_holder(mode: str, token: str) -> tuple[subprocess.Popen[str], str]:
    """A dagentic process holding sandboxes (``mode``: idle, running, process); its owner
    label once it holds them."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, mode, token], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    ready, _, _ = select.select([holder.stdout], [], [], 120)
    assert ready, "the holder did not get its sandboxes within 120 s"
    return holder, holder.stdout.readline().strip()


def containers_of(api: Any, owner: str) -> list[str]:
    return [
        info["Id"][:12]
        for info in api.containers(all=True, filters={"label": [LABEL, f"{OWNER_LABEL}={owner}"]})
    ]


@pytest.mark.parametrize("mode", ["idle", "running"])
async def test_kill_9_of_the_owner_leaves_no_container_behind(api: Any, mode: str) -> None:
    # idle: two warm containers wait for a job; running: and a third runs code that sleeps.
    holder, owner = start_holder(mode, secrets.token_hex(8))
    try:
        assert len(containers_of(api, owner)) == (2 if mode == "idle" else 3)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]
    # Waiting harnesses end at once; a running one at its wall-clock limit (5 s).
    await wait_until(
        lambda: not containers_of(api, owner),
        60,
        f"containers of the killed owner {owner} are still there: {containers_of(api, owner)}",
    )


async def test_kill_9_of_the_owner_ends_process_sandboxes_and_prune_removes_their_cgroups() -> None:
    token = secrets.token_hex(8)
    holder, _ = start_holder("process", token)
    try:
        assert host_processes_with(f"sleep-{token}", but=holder.pid), "the code is not running"
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]
    # bubblewrap's --die-with-parent: the code dies with its owner.
    await wait_until(
        lambda: not host_processes_with(f"sleep-{token}", but=holder.pid),
        10,
        "the code outlived its owner",
    )
    layout = cgroup._layout()
    assert layout is not None, "no cgroup for process sandboxes here (dagentic runs as root)"
    left = [p for parent in layout.parents for p in parent.glob(f"dagentic-run-{holder.pid}-*")]
    assert left, "the killed owner's run left no cgroup: the test proves nothing"
    removed = await prune_process_leftovers()
    assert {f"process cgroup {p}" for p in left} <= set(removed)
    assert [p for p in left if p.exists()] == []


def host_processes_with(text: str, *, but: int) -> list[int]:
    """Processes on the host whose command line holds ``text``, but this one and ``but``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in (os.getpid(), but):
            with contextlib.suppress(OSError):
                if text.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
    return found


# -- open_sandbox and backend selection -----------------------------------------------------


@pytest.fixture
async def opened() -> AsyncIterator[None]:
    """open_sandbox caches sandboxes process-wide: release them after the test."""
    try:
        yield
    finally:
        await close_sandboxes()


@pytest.mark.usefixtures("opened")
async def test_open_sandbox_auto_picks_docker_when_it_is_available() -> None:
    sandbox = await open_sandbox(settings_with(pool_size=0), "auto")
    outcome = await sandbox.run("result = 'hi'")
    assert (outcome.backend, outcome.isolation, outcome.result) == ("docker", "container", "hi")


@pytest.mark.usefixtures("opened")
async def test_open_sandbox_backend_defaults_to_the_sandbox_backend_setting() -> None:
    sandbox = await open_sandbox(settings_with(backend="process"))
    outcome = await sandbox.run("result = 'hi'")
    assert (outcome.backend, outcome.isolation) == ("process", "namespaces+rlimits")


@pytest.mark.usefixtures("opened")
async def test_open_sandbox_process_gives_the_process_backend() -> None:
    sandbox = await open_sandbox(settings_with(pool_size=0), "process")
    outcome = await sandbox.run("result = 'hi'")
    assert (outcome.backend, outcome.result) == ("process", "hi")


@pytest.mark.usefixtures("opened")
async def test_open_sandbox_returns_the_same_sandbox_for_the_same_settings() -> None:
    settings = settings_with(pool_size=0)
    first = await open_sandbox(settings, "process")
    assert await open_sandbox(settings_with(pool_size=0), "process") is first
    assert await open_sandbox(settings_with(pool_size=1), "process") is not first


@pytest.mark.usefixtures("opened")
async def test_open_sandbox_unknown_backend_raises_sandbox_unavailable() -> None:
    with pytest.raises(SandboxUnavailableError) as caught:
        await open_sandbox(settings_with(), "podman")
    assert caught.value.message == "unknown sandbox backend 'podman' (known: docker, process)"
    assert caught.value.failure_mode is FailureMode.POLICY_BLOCKED


@pytest.mark.usefixtures("opened")
async def test_open_sandbox_docker_with_a_missing_image_raises_instead_of_falling_back() -> None:
    with pytest.raises(SandboxUnavailableError) as caught:
        await open_sandbox(settings_with(image="dagentic-sandbox:no-such-tag"), "docker")
    assert caught.value.message == (
        "sandbox backend 'docker' is not available: the sandbox image "
        "dagentic-sandbox:no-such-tag is missing; build it with sandbox/image/build.sh"
    )


@pytest.mark.usefixtures("opened")
async def test_open_sandbox_auto_takes_process_when_the_docker_image_is_missing() -> None:
    sandbox = await open_sandbox(settings_with(image="dagentic-sandbox:no-such-tag"), "auto")
    assert (await sandbox.run("result = 1")).backend == "process"


def fake_backend(
    name: str, strength: int, reason: str | None, probed: list[str] | None = None
) -> SandboxBackend:
    async def available(settings: Any) -> str | None:
        if probed is not None:
            probed.append(name)
        return reason

    return SandboxBackend(
        name=name,
        isolation=f"{name}-isolation",
        strength=strength,
        available=available,
        create=lambda settings: ProcessSandbox(),
    )


async def test_select_auto_skips_unavailable_backends_for_the_strongest_available() -> None:
    probed: list[str] = []
    backends = {
        b.name: b
        for b in [
            fake_backend("weak", 1, None, probed),
            fake_backend("strong", 3, "no engine", probed),
            fake_backend("middle", 2, None, probed),
        ]
    }
    chosen = await select_sandbox_backend(backends, "auto", settings=None)
    assert chosen.name == "middle"
    assert probed == ["strong", "middle"]


async def test_select_named_unavailable_backend_raises_with_its_reason() -> None:
    backends = {
        b.name: b
        for b in [fake_backend("strong", 3, "no engine answers"), fake_backend("weak", 1, None)]
    }
    with pytest.raises(SandboxUnavailableError) as caught:
        await select_sandbox_backend(backends, "strong", settings=None)
    assert caught.value.message == "sandbox backend 'strong' is not available: no engine answers"
    assert caught.value.fields == {"backend": "strong"}


async def test_select_named_available_backend_is_taken_even_if_a_stronger_one_exists() -> None:
    backends = {b.name: b for b in [fake_backend("strong", 3, None), fake_backend("weak", 1, None)]}
    assert (await select_sandbox_backend(backends, "weak", settings=None)).name == "weak"


async def test_select_auto_with_nothing_available_lists_every_reason_strongest_first() -> None:
    backends = {
        b.name: b
        for b in [fake_backend("weak", 1, "no bwrap"), fake_backend("strong", 3, "no engine")]
    }
    with pytest.raises(SandboxUnavailableError) as caught:
        await select_sandbox_backend(backends, "auto", settings=None)
    assert caught.value.message == (
        "no sandbox backend is available: strong: no engine; weak: no bwrap"
    )


async def test_select_with_no_backend_installed_says_so() -> None:
    with pytest.raises(SandboxUnavailableError) as caught:
        await select_sandbox_backend({}, "auto", settings=None)
    assert caught.value.message == "no sandbox backend is installed"
    with pytest.raises(SandboxUnavailableError) as caught:
        await select_sandbox_backend({}, "docker", settings=None)
    assert caught.value.message == "unknown sandbox backend 'docker' (known: none installed)"
