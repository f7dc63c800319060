"""``dagentic sandbox run`` and ``dagentic sandbox prune``: through typer's CliRunner, and
once as the installed script.

Exit codes: 0 the code succeeded, 1 it did not, 2 the file cannot be read or the sandbox
cannot run here.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import time
from pathlib import Path

import docker
import pytest
from dagentic.isolation import SandboxResult
from dagentic.sandbox import cgroup
from dagentic.sandbox.container import _OWNER, LABEL, OWNER_LABEL
from typer.testing import Result

from tests import cli
from tests.cli import DAGENTIC

ROOT = Path(__file__).resolve().parents[2]
PANDAS_REPORT = ROOT / "examples" / "sandbox_pandas_report.py"
BACKENDS = ["process", "docker"]
ISOLATION = {"process": "namespaces+rlimits", "docker": "container"}

REPORT_STDOUT = "region\nnorth    270.25\nsouth    176.25\neast     130.00\n"
REPORT_RESULT = {"top_region": "north", "total": 576.5}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No dagentic.toml or DAGENTIC_* variables from around the tests reach the CLI."""
    cli.isolate(tmp_path, monkeypatch)


def invoke(*args: str | Path, env: dict[str, str | None] | None = None) -> Result:
    return cli.invoke("sandbox", "run", *args, env=env)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_prints_what_the_pandas_example_printed_and_exits_0(backend: str) -> None:
    result = invoke("--backend", backend, PANDAS_REPORT)
    assert result.exit_code == 0, result.output
    assert result.stdout == REPORT_STDOUT
    assert re.fullmatch(
        rf"sandbox: exit_reason=ok; exit_code=0; backend={backend} "
        rf"\({re.escape(ISOLATION[backend])}\); \d+ ms; "
        r'result=\{"top_region": "north", "total": 576\.5\}\n',
        result.stderr,
    ), result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_prints_a_sandbox_result(backend: str) -> None:
    result = invoke("--backend", backend, "--json", PANDAS_REPORT)
    assert result.exit_code == 0, result.output
    outcome = SandboxResult.model_validate_json(result.stdout)
    assert (outcome.exit_reason, outcome.exit_code, outcome.backend) == ("ok", 0, backend)
    assert outcome.isolation == ISOLATION[backend]
    assert outcome.stdout == REPORT_STDOUT
    assert outcome.result == REPORT_RESULT
    assert result.stderr == ""


def test_code_that_fails_exits_1_with_its_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.py", "print('partial')\nraise KeyError('region')\n")
    result = invoke("--backend", "process", path)
    assert result.exit_code == 1, result.output
    assert result.stdout == "partial\n"
    lines = result.stderr.splitlines()
    assert lines[:3] == [
        "Traceback (most recent call last):",
        '  File "main.py", line 2, in <module>',
        "KeyError: 'region'",
    ]
    assert re.fullmatch(
        r"sandbox: exit_reason=error; exit_code=1; backend=process "
        r"\(namespaces\+rlimits\); \d+ ms; the code exited with status 1",
        lines[3],
    ), lines[3]
    assert len(lines) == 4


def test_wall_time_option_limits_the_run(tmp_path: Path) -> None:
    path = write(tmp_path, "slow.py", "import time\ntime.sleep(30)\n")
    start = time.monotonic()
    result = invoke("--backend", "process", "--wall-time", "1", "--json", path)
    assert time.monotonic() - start < 6
    assert result.exit_code == 1, result.output
    outcome = SandboxResult.model_validate_json(result.stdout)
    assert (outcome.exit_reason, outcome.detail) == ("timeout", "the wall-clock limit of 1s passed")


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = invoke("--backend", "process", "nope.py")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == (
        "error: cannot read nope.py: [Errno 2] No such file or directory: 'nope.py'\n"
    )


def test_unavailable_backend_exits_2_and_says_why(tmp_path: Path) -> None:
    path = write(tmp_path, "ok.py", "result = 1\n")
    result = invoke(
        "--backend", "docker", path, env={"DAGENTIC_SANDBOX__IMAGE": "dagentic-sandbox:no-such-tag"}
    )
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == (
        "error: sandbox backend 'docker' is not available: the sandbox image "
        "dagentic-sandbox:no-such-tag is missing; build it with sandbox/image/build.sh\n"
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_fork_bomb_ends_promptly_with_exit_reason_pids(backend: str, tmp_path: Path) -> None:
    path = write(tmp_path, "bomb.py", "import os\nwhile True:\n    os.fork()\n")
    for attempt in range(3):  # how a fork bomb unfolds varies from run to run
        start = time.monotonic()
        result = invoke("--backend", backend, "--json", path)
        elapsed = time.monotonic() - start
        assert result.exit_code == 1, result.output
        outcome = SandboxResult.model_validate_json(result.stdout)
        assert (outcome.exit_reason, outcome.backend) == ("pids", backend), (
            f"run {attempt + 1}: {outcome.exit_reason} after {elapsed:.1f} s: {outcome.detail}"
        )
        assert elapsed < 15, f"run {attempt + 1} took {elapsed:.1f} s"


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_prune_removes_what_dead_owners_left_and_keeps_what_live_ones_hold() -> None:
    client = docker.from_env(timeout=30)
    api = client.api
    host, dead = socket.gethostname(), dead_pid()

    def sleeper(owner: str) -> str:
        created = api.create_container(
            "dagentic-sandbox:latest",
            command=["sleep", "60"],
            labels={LABEL: "1", OWNER_LABEL: owner},
            network_disabled=True,
            host_config=api.create_host_config(network_mode="none"),
        )
        api.start(created["Id"])
        return created["Id"]

    layout = cgroup._layout()
    assert layout is not None, "no cgroup for process sandboxes here (dagentic runs as root)"
    left_cgroups = [parent / f"dagentic-run-{dead}-0" for parent in layout.parents]
    for path in left_cgroups:
        path.mkdir()
    left = sleeper(f"{host}:{dead}:1")
    live = sleeper(_OWNER)
    try:
        result = cli.invoke("sandbox", "prune")
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        # Gone: removed by this command, or first by a sandbox that another test process
        # started meanwhile (a sandbox's first start reaps what dead owners left too).
        assert all(
            line.startswith(("removed docker container ", "removed process cgroup "))
            for line in lines
        )
        for path in left_cgroups:
            assert not path.exists()
        assert result.stderr == f"sandbox prune: {len(lines)} removed\n"
        assert api.inspect_container(live)["State"]["Running"]
        with pytest.raises(docker.errors.NotFound):
            api.inspect_container(left)
    finally:
        for container in (left, live):
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(container, force=True)
        for path in left_cgroups:
            with contextlib.suppress(FileNotFoundError):
                path.rmdir()
        client.close()


def run_script(*args: str | Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the installed ``dagentic`` script; also return the ids of sandbox containers
    its process owned that still exist a moment after it exited (and remove them, so that
    they are not left to the next sandbox's reaper)."""
    command = [str(DAGENTIC), *(str(a) for a in args)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=cli.script_env(),
    )
    try:
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    owner = f"{socket.gethostname()}:{process.pid}:"  # and when it started
    client = docker.from_env(timeout=30)
    try:
        time.sleep(2)  # what the exited process had asked the engine for has happened
        left = [
            info
            for info in client.api.containers(all=True, filters={"label": LABEL})
            if (info.get("Labels") or {}).get(OWNER_LABEL, "").startswith(owner)
        ]
        for info in left:
            client.api.remove_container(info["Id"], force=True, v=True)
    finally:
        client.close()
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    return done, [info["Id"][:12] for info in left]


@pytest.mark.slow
def test_installed_script_runs_the_pandas_example_on_docker() -> None:
    done, _ = run_script("sandbox", "run", "--backend", "docker", PANDAS_REPORT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == REPORT_STDOUT
    assert re.fullmatch(
        r"sandbox: exit_reason=ok; exit_code=0; backend=docker \(container\); \d+ ms; "
        r'result=\{"top_region": "north", "total": 576\.5\}\n',
        done.stderr,
    ), done.stderr


@pytest.mark.slow
def test_installed_script_leaves_no_sandbox_container_behind_when_it_exits(tmp_path: Path) -> None:
    path = write(tmp_path, "quick.py", "result = 1\n")
    for _ in range(3):  # a short run is the likeliest to exit while the pool still fills
        done, left = run_script("sandbox", "run", "--backend", "docker", path)
        assert done.returncode == 0, done.stderr
        assert left == [], "the exited CLI left its sandbox containers running"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_whose_code_step_timed_out_exits_once_it_has_printed(
    tmp_path: Path, backend: str
) -> None:
    """The step's timeout abandons the sandbox call; the process does not then wait for
    the code (here 10 minutes) before it exits."""
    plan = write(
        tmp_path,
        "slow.yaml",
        "name: slow\n"
        "steps:\n"
        "  - id: slow\n"
        "    tool: code.python\n"
        "    timeout: 1\n"
        "    args:\n"
        "      code: |\n"
        "        import time\n"
        "        time.sleep(600)\n",
    )
    done = cli.run_script(  # the code alone would take 600 s
        "run", plan, cwd=tmp_path, env={"DAGENTIC_SANDBOX__BACKEND": backend}, timeout=90
    )
    assert done.returncode == 1, done.stderr
    assert "timeout: step 'slow': tool 'code.python' did not finish within 1s" in done.stdout
