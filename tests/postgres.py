"""A real PostgreSQL server for tests, on 127.0.0.1 only: one fresh cluster per test session.

    def test_journal(postgres_server: PostgresServer) -> None:
        url = postgres_server.new_database("journal_resume")  # a database of its own
        ...

The cluster lives in a temporary directory (owned by the ``postgres`` user when the tests
run as root, as PostgreSQL refuses to run as root), with trust authentication, no locale,
UTF-8, and ``fsync=off``: nothing here outlives the session. The server binaries are the
newest of ``/usr/lib/postgresql/*/bin``; scripts/setup.sh installs them. Without them the
fixture fails, it never skips.

The server is stopped (``pg_ctl stop -m fast``) and its directory removed when the session
ends, also on Ctrl-C; a small watchdog process does the same if pytest dies without
running its teardown (SIGKILL, os._exit).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "postgres_server"]

HOST = "127.0.0.1"
SUPERUSER = "postgres"
BIN_GLOB = "/usr/lib/postgresql/*/bin"
SETUP_HINT = "run scripts/setup.sh (it installs PostgreSQL's server and psycopg)"
DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# Blocks until its stdin closes, which happens when the pytest process ends however it
# ends; then stops the server and removes its directory. argv: the directory, then the
# stop command.
WATCHDOG = """\
import shutil, subprocess, sys
sys.stdin.buffer.read()
subprocess.run(sys.argv[2:], cwd=sys.argv[1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


class PostgresServer:
    """A running PostgreSQL server: `url` of its ``postgres`` database, and `new_database`."""

    def __init__(self, bindir: Path, base: Path, port: int, as_user: list[str]) -> None:
        self.bindir = bindir
        self.base = base  # the temporary directory: data/, server.log, the socket
        self.port = port
        self.url = f"postgresql://{SUPERUSER}@{HOST}:{port}/postgres"
        self.as_user = as_user  # ["runuser", "-u", "postgres", "--"] as root, else []
        self.startup_seconds = 0.0

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_path(self) -> Path:
        return self.base / "server.log"

    def new_database(self, name: str) -> str:
        """CREATE DATABASE `name` (lower-case letters, digits, _) and return its URL."""
        if not DB_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r}: use [a-z_][a-z0-9_]*, at most 63")
        try:
            import psycopg
        except ImportError:
            pytest.fail(f"psycopg is not installed: {SETUP_HINT}", pytrace=False)
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{name}"

    def _run(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, *args],
            cwd=self.base,  # the postgres user may not be allowed into pytest's directory
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:]) or "(the server log is empty)"

    def initdb(self) -> None:
        done = self._run(
            str(self.bindir / "initdb"),
            *("-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust"),
            *("--no-locale", "--encoding=UTF8", "--no-sync", "--no-instructions"),
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def start(self) -> subprocess.CompletedProcess[str]:
        options = (
            f"-p {self.port} -c listen_addresses={HOST} -k {shlex.quote(str(self.base))}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        return self._run(
            str(self.bindir / "pg_ctl"),
            *("-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "60"),
            *("-o", options, "start"),
        )

    def stop_args(self) -> list[str]:
        return [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-w", "-m", "fast", "stop"]

    def stop(self) -> None:
        done = self._run(*self.stop_args())
        if done.returncode != 0 and (self.data_dir / "postmaster.pid").exists():
            raise RuntimeError(
                f"pg_ctl stop failed ({done.returncode}):\n{done.stdout}{done.stderr}\n"
                f"server log:\n{self.log_tail()}"
            )


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin that holds initdb and pg_ctl."""
    found = [
        Path(path)
        for path in glob.glob(BIN_GLOB)
        if os.access(Path(path) / "initdb", os.X_OK) and os.access(Path(path) / "pg_ctl", os.X_OK)
    ]
    if not found:
        pytest.fail(
            f"PostgreSQL's server is not installed (no initdb, pg_ctl in {BIN_GLOB}): {SETUP_HINT}",
            pytrace=False,
        )
    return max(found, key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.name)] or [0])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_collision(log: str) -> bool:
    return "could not bind" in log or "Address already in use" in log


# Starts the watchdog detached (its parent exits at once), prints its pid, and hands it
# its own standard input: no process of the test session's stays a child of pytest (the
# sandbox's host guards look for leftover descendants).
SPAWN = """\
import subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdin=sys.stdin, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
print(child.pid, flush=True)
"""


class Watchdog:
    """The watchdog process: it cleans up when the pipe to it closes (pytest ended)."""

    def __init__(self, args: list[str]) -> None:
        spawner = subprocess.Popen(
            [sys.executable, "-c", SPAWN, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal does not reach it
        )
        assert spawner.stdout is not None
        with spawner.stdout:
            self.pid = int(spawner.stdout.readline())
        spawner.wait()
        self.pipe = spawner.stdin

    def close(self, timeout: float = 60) -> None:
        """Close the pipe, then wait until the watchdog has done its work and exited."""
        if self.pipe is not None:
            self.pipe.close()
            self.pipe = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.pid}/stat", encoding="utf-8") as stat:
                    if stat.read().rpartition(")")[2].split()[0] == "Z":
                        return  # done; its new parent has not reaped it yet
            except OSError:
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def start_server() -> tuple[PostgresServer, Watchdog]:
    """initdb and start a cluster in a fresh directory; also the watchdog that cleans up."""
    bindir = find_bindir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(SUPERUSER)
        except KeyError:
            pytest.fail(
                f"running as root, but there is no user {SUPERUSER!r}: {SETUP_HINT}", pytrace=False
            )
        as_user = ["runuser", "-u", SUPERUSER, "--"]
    # /tmp as root: TMPDIR or pytest's own directories may be closed to the postgres user.
    base = Path(tempfile.mkdtemp(prefix="dagentic-pg-", dir="/tmp" if as_user else None))
    if as_user:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    server = PostgresServer(bindir, base, free_port(), as_user)
    watchdog = Watchdog([sys.executable, "-c", WATCHDOG, str(base), *as_user, *server.stop_args()])
    try:
        server.initdb()
        for attempt in (1, 2):
            done = server.start()
            if done.returncode == 0:
                return server, watchdog
            log = server.log_tail()
            if attempt == 1 and port_collision(log):
                server.stop()  # in case it is half up
                server.log_path.unlink(missing_ok=True)
                server.port = free_port()
                server.url = f"postgresql://{SUPERUSER}@{HOST}:{server.port}/postgres"
                continue
            raise RuntimeError(
                f"pg_ctl start failed ({done.returncode}) on port {server.port}:\n"
                f"{done.stdout}{done.stderr}\nserver log:\n{log}"
            )
        raise AssertionError("unreachable")
    except BaseException:
        watchdog.close()  # it stops what may have started and removes the directory
        raise


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A fresh PostgreSQL server on 127.0.0.1 for the session; `new_database` per test."""
    started = time.monotonic()
    try:
        server, watchdog = start_server()
    except RuntimeError as error:
        pytest.fail(f"could not start PostgreSQL: {error}", pytrace=False)
    server.startup_seconds = time.monotonic() - started
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            # Nothing left for it to stop; it removes the directory and exits.
            watchdog.close()
            with contextlib.suppress(OSError):
                shutil.rmtree(server.base)
