"""Faults of durable runs, with real processes: ``kill -9`` at seeded points of a plan run
then resumes until it succeeds, every side effect exactly once; a kill in the middle of a
journal commit; a full disk; two processes resuming one run at once; Ctrl-C.

The runs are :mod:`tests.runtime.durable_driver` processes, each with its own journal in a
temporary folder. Its ``fault.append`` tool appends its call's idempotency key to a file
unless the key is there already: the file tells which side effects happened, and how often.
The seeded trials fork their processes from the driver's fork server (imports paid once);
the other tests start the driver as a script.
"""

from __future__ import annotations

import os
import queue
import random
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.runtime.durable_driver import (
    FINISHED,
    JOURNAL_ERROR,
    NO_SUCH_RUN,
    SUCCEEDED,
    disk_plan,
    expected_keys,
    fault_plan,
    gate_plan,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DRIVER = [sys.executable, "-m", "tests.runtime.durable_driver"]
SAFETY = 60.0  # seconds a process may take: a safety net far above what any takes
KILLED = -signal.SIGKILL
SEEDS = list(range(52))  # one trial each; a failure names its seed (pytest -k 'seed17')


def driver_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGENTIC_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def db_path(runs_dir: Path) -> Path:
    return runs_dir / "journal.sqlite"


def journal_status(runs_dir: Path, run_id: str) -> str | None:
    """The run's status as its journal has it (None: not there)."""
    with sqlite3.connect(db_path(runs_dir)) as conn:
        row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else row[0]


def integrity(runs_dir: Path) -> str:
    conn = sqlite3.connect(db_path(runs_dir))
    try:
        return "\n".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def effects_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def exactly_once(path: Path, expected: Sequence[str]) -> str | None:
    """Why the side-effect file is not every expected key exactly once (None: it is)."""
    counts = Counter(effects_lines(path))
    problems = []
    twice = sorted(k for k, n in counts.items() if n > 1)
    missing = sorted(set(expected) - set(counts))
    extra = sorted(set(counts) - set(expected))
    if twice:
        problems.append(f"written more than once: {twice}")
    if missing:
        problems.append(f"never written: {missing}")
    if extra:
        problems.append(f"not expected: {extra}")
    return "; ".join(problems) or None


# --------------------------------------------------------------------------- processes


class ForkServer:
    """The driver's fork server: one child at a time, its exit code as ``os.waitpid``
    tells (-9: SIGKILL)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [*DRIVER, "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=driver_env(),
        )
        self._buffer = b""

    def _line(self, deadline: float) -> dict[str, Any]:
        import json

        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the fork server did not answer in time")
            ready, _, _ = select.select([fd], [], [], min(left, 0.002))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise RuntimeError("the fork server ended")
                self._buffer += chunk
            else:
                return {}
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def call(
        self,
        argv: list[str],
        out: Path,
        kill_when: Callable[[], bool] | None = None,
    ) -> tuple[int, str]:
        """Run the driver with ``argv`` in a forked child; SIGKILL it once ``kill_when()``
        is true (asked every few ms). Its exit code and output."""
        import json

        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"argv": argv, "out": str(out)}).encode() + b"\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + SAFETY
        started: dict[str, Any] = {}
        while not started:
            started = self._line(deadline)
        pid = started["pid"]
        killed = False
        while True:
            answer = self._line(deadline)
            if answer:
                assert answer["pid"] == pid
                return answer["code"], out.read_text() if out.exists() else ""
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                raise TimeoutError(f"driver {argv} took more than {SAFETY:g} s")
            if not killed and kill_when is not None and kill_when():
                os.kill(pid, signal.SIGKILL)  # ours: the server answers once it reaped it
                killed = True

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.stdout.close()
        try:
            self.process.wait(timeout=SAFETY)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def fork_server() -> Iterator[ForkServer]:
    server = ForkServer()
    try:
        yield server
    finally:
        server.close()


class Driver:
    """The driver as a script of its own, its output read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [*DRIVER, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=driver_env(),
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_line(self, text: str) -> None:
        """Read until a line that contains ``text``."""
        deadline = time.monotonic() + SAFETY
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise TimeoutError(f"no {text!r} from {self.args}: {self.output}") from None
            if line is None:
                raise AssertionError(f"{self.args} ended before {text!r}: {self.output}")
            self.output.append(line)
            if text in line:
                return

    def finish(self) -> tuple[int, str]:
        """Its exit code and all it printed."""
        try:
            code = self.process.wait(timeout=SAFETY)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        while (line := self.lines.get(timeout=SAFETY)) is not None:
            self.output.append(line)
        return code, "\n".join(self.output)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.process.send_signal(sig)


# --------------------------------------------------------------------------- seeded kill -9


@dataclass
class Trial:
    """Which processes of one trial are killed where: ``("write", n)`` right after its
    nth side effect, ``("event", k)`` right after its kth journal event is queued,
    ``("lines", n, delay)`` by the test once the effect file has grown by n lines, then
    ``delay`` seconds. The processes after them resume until the run succeeds."""

    seed: int
    crashes: list[tuple[Any, ...]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    TOTAL: ClassVar[int] = len(expected_keys(fault_plan(), "x"))

    @classmethod
    def make(cls, seed: int) -> Trial:
        rng = random.Random(seed)
        trial = cls(seed)
        for number in range(rng.choice([1, 1, 2, 2, 3])):
            mode = rng.choice(["write", "write", "event", "lines"])
            if mode == "write":  # the first process has all the writes still to do
                trial.crashes.append(("write", rng.randint(1, cls.TOTAL - 1 if not number else 6)))
            elif mode == "event":  # the first few: mostly before the run's first commit
                last = rng.choice([3, 160]) if not number else 60
                trial.crashes.append(("event", rng.randint(1, last)))
            else:
                trial.crashes.append(("lines", rng.randint(0, 8), round(rng.uniform(0, 0.02), 4)))
        return trial

    def explain(self, problem: str) -> str:
        return (
            f"seed {self.seed} (crashes {self.crashes}): {problem}\n"
            + "\n".join(self.log)
            + f"\nreproduce: pytest {Path(__file__).relative_to(ROOT)} -k 'seed{self.seed}]'"
        )


def lines_then(effects: Path, lines: int, delay: float) -> Callable[[], bool]:
    """True once ``effects`` has ``lines`` lines and ``delay`` seconds more passed."""
    since: list[float] = []

    def due() -> bool:
        if not since:
            if len(effects_lines(effects)) < lines:
                return False
            since.append(time.monotonic())
        return time.monotonic() - since[0] >= delay

    return due


def run_trial(server: ForkServer, tmp: Path, trial: Trial) -> None:
    runs_dir, effects = tmp / "runs", tmp / "effects.txt"
    run_id = f"trial-{trial.seed}"
    base = ["--runs-dir", str(runs_dir), "--effects", str(effects)]
    command, crashes = "run", list(trial.crashes)
    for number in range(len(trial.crashes) + 6):
        crash = crashes[0] if crashes else None
        argv = [*base, command, run_id]
        kill_when = None
        if crash is not None and crash[0] == "write":
            argv += ["--kill-after-write", str(crash[1])]
        elif crash is not None and crash[0] == "event":
            argv += ["--kill-after-event", str(crash[1])]
        elif crash is not None:
            kill_when = lines_then(effects, len(effects_lines(effects)) + crash[1], crash[2])
        code, out = server.call(argv, tmp / f"out-{number}.txt", kill_when)
        trial.log.append(
            f"  {command} {crash or ''} -> exit {code}, {len(effects_lines(effects))} lines"
            + "".join(f"\n    | {line}" for line in out.splitlines()[-12:])
        )
        if code == NO_SUCH_RUN:  # killed before the run's first commit: start it again
            command = "run"
            continue
        command = "resume"
        if crash is not None:
            crashes.pop(0)
        if code == KILLED:
            continue
        if code == FINISHED:  # killed after the journal said it succeeded
            assert journal_status(runs_dir, run_id) == "succeeded", trial.explain(out)
            break
        assert code == SUCCEEDED and "status: succeeded" in out, trial.explain(
            f"the run ended with exit {code}"
        )
        break
    else:
        raise AssertionError(trial.explain("the run never succeeded"))
    assert journal_status(runs_dir, run_id) == "succeeded", trial.explain("journal status")
    problem = exactly_once(effects, expected_keys(fault_plan(), run_id))
    assert problem is None, trial.explain(problem or "")


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{s}" for s in SEEDS])
def test_kill_9_at_a_seeded_point_then_resuming_does_every_side_effect_exactly_once(
    fork_server: ForkServer, tmp_path: Path, seed: int
) -> None:
    run_trial(fork_server, tmp_path, Trial.make(seed))


def test_the_seeded_trials_kill_in_every_way() -> None:
    """The seed list covers each kind of kill, some trials more than once."""
    trials = [Trial.make(seed) for seed in SEEDS]
    kinds = Counter(crash[0] for t in trials for crash in t.crashes)
    assert len(SEEDS) >= 50
    assert min(kinds[k] for k in ("write", "event", "lines")) >= 8, kinds
    assert sum(len(t.crashes) > 1 for t in trials) >= 15
    assert any(c[0] == "event" and c[1] <= 3 for t in trials for c in t.crashes[:1])


# --------------------------------------------------------------------------- torn commits


def test_kill_9_inside_a_commit_of_a_large_output_leaves_a_journal_that_opens_and_resumes(
    tmp_path: Path,
) -> None:
    runs_dir, effects = tmp_path / "runs", tmp_path / "effects.txt"
    args = ["--runs-dir", str(runs_dir), "--effects", str(effects), "--plan", "big"]
    code, out = Driver(*args, "--kill-in-commit", "output", "run", "big").finish()
    assert code == KILLED, out
    # The writer had put a megabyte and more of the transaction in the write-ahead log, and
    # not committed it: the output is not in the journal, the write before it is.
    grew = int(out.split("killed inside a commit: ")[1].split()[0])
    assert grew >= 1 << 20, out
    assert integrity(runs_dir) == "ok"
    with sqlite3.connect(db_path(runs_dir)) as conn:
        done = {
            r[0]
            for r in conn.execute(
                "SELECT step_id FROM events WHERE run_id = 'big' AND kind = 'finished'"
            )
        }
    assert done == {"before"}
    assert journal_status(runs_dir, "big") == "running"

    code, out = Driver(*args, "resume", "big").finish()
    assert (code, out) == (SUCCEEDED, "status: succeeded")
    assert integrity(runs_dir) == "ok"
    assert exactly_once(effects, ["big/before", "big/after"]) is None


def test_kill_9_while_thousands_of_events_are_committed_leaves_a_journal_that_resumes(
    tmp_path: Path,
) -> None:
    runs_dir, effects = tmp_path / "runs", tmp_path / "effects.txt"
    args = ["--runs-dir", str(runs_dir), "--effects", str(effects), "--plan", "events"]
    code, out = Driver(*args, "--kill-in-commit", "events", "run", "events").finish()
    assert code == KILLED, out
    assert integrity(runs_dir) == "ok"
    with sqlite3.connect(db_path(runs_dir)) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM events WHERE run_id = 'events'").fetchone()
    assert count >= 2000  # killed once 2,000 events were committed, in a commit after them
    code, out = Driver(*args, "resume", "events").finish()
    assert (code, out) == (SUCCEEDED, "status: succeeded")
    assert integrity(runs_dir) == "ok"
    assert exactly_once(effects, ["events/before", "events/after"]) is None


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (tests run as root; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_run_with_a_clear_error_and_no_write_after_it(
    tmp_path: Path, small_disk: Path
) -> None:
    runs_dir, effects = small_disk / "runs", tmp_path / "effects.txt"
    args = ["--runs-dir", str(runs_dir), "--effects", str(effects), "--plan", "disk"]
    code, out = Driver(*args, "run", "disk").finish()
    assert code == 1, out
    assert "status: failed" in out
    error = out.split("error: ", 1)[1]
    assert f"the run journal {runs_dir.resolve() / 'journal.sqlite'} cannot be written" in error
    assert "the disk of" in error and "is full" in error
    assert "the run stops here" in error and "free space" in error
    assert "mode: resource_limit" in out
    written = effects_lines(effects)
    every = expected_keys(disk_plan(), "disk")
    assert written == every[: len(written)] and len(written) < len(every), written

    # More room (the same disk, grown): the journal opens, whole, and the run resumes.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert integrity(runs_dir) == "ok"
    with sqlite3.connect(db_path(runs_dir)) as conn:
        journaled = {
            f"disk/{r[0]}"
            for r in conn.execute(
                "SELECT step_id FROM events WHERE run_id = 'disk' AND kind = 'attempt'"
            )
        }
    # No write ran that the journal did not know was about to run: none after the failure.
    assert set(written) <= journaled, (written, journaled)
    code, out = Driver(*args, "resume", "disk").finish()
    assert (code, out) == (SUCCEEDED, "status: succeeded")
    assert exactly_once(effects, every) is None


# --------------------------------------------------------------------------- leases


def test_of_two_processes_resuming_one_run_at_once_one_runs_it_the_other_is_told(
    tmp_path: Path,
) -> None:
    runs_dir, effects = tmp_path / "runs", tmp_path / "effects.txt"
    gate, go = tmp_path / "gate", tmp_path / "go"
    args = ["--runs-dir", str(runs_dir), "--effects", str(effects), "--plan", "gate"]
    first = Driver(*args, "--gate", str(gate), "run", "race")
    first.wait_for_line("gate: waiting")
    first.kill()
    assert first.finish()[0] == KILLED

    both = [Driver(*args, "--wait-for", str(go), "resume", "race") for _ in range(2)]
    for driver in both:
        driver.wait_for_line("ready")
    go.touch()  # both resume now
    loser = None
    deadline = time.monotonic() + SAFETY
    while loser is None and time.monotonic() < deadline:
        loser = next((d for d in both if d.process.poll() is not None), None)
        time.sleep(0.01)
    assert loser is not None
    winner = both[1 - both.index(loser)]
    code, out = loser.finish()
    assert code == JOURNAL_ERROR, out
    assert "error: run 'race' is being run by another process (" in out
    assert "it can be resumed when that one stops, or after its lease runs out" in out
    winner.wait_for_line("gate: waiting")  # it holds the run, at the gate
    gate.touch()
    assert winner.finish() == (SUCCEEDED, "ready\ngate: waiting\nstatus: succeeded")
    assert exactly_once(effects, expected_keys(gate_plan(""), "race")) is None


# --------------------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("sigint", ["cancel", "raise"])
def test_ctrl_c_cancels_the_run_and_it_resumes(tmp_path: Path, sigint: str) -> None:
    """``cancel``: Ctrl-C cancels the run, as ``dagentic run`` does; ``raise``: Python's
    KeyboardInterrupt cancels it through the event loop."""
    runs_dir, effects, gate = tmp_path / "runs", tmp_path / "effects.txt", tmp_path / "gate"
    args = ["--runs-dir", str(runs_dir), "--effects", str(effects), "--plan", "gate"]
    driver = Driver(*args, "--gate", str(gate), "--sigint", sigint, "run", "ctrl-c")
    driver.wait_for_line("gate: waiting")
    driver.kill(signal.SIGINT)
    code, out = driver.finish()
    assert code == 1, out
    assert "status: cancelled" in out
    assert journal_status(runs_dir, "ctrl-c") == "cancelled"
    before = sorted(effects_lines(effects))
    assert before == ["ctrl-c/a", "ctrl-c/e/0", "ctrl-c/e/1", "ctrl-c/e/2"]
    gate.touch()
    code, out = Driver(*args, "resume", "ctrl-c").finish()
    assert (code, out) == (SUCCEEDED, "gate: waiting\nstatus: succeeded")
    assert exactly_once(effects, expected_keys(gate_plan(""), "ctrl-c")) is None


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_write_without_idempotency_key_stopped_mid_call_waits_for_a_person_on_resume(
    tmp_path: Path, sig: int
) -> None:
    """A call of a tool that may not write twice, stopped after it wrote and before it
    answered: whether the run crashed or was cancelled, resuming asks a person before the
    call runs again (the run waits), and nothing is written twice."""
    runs_dir, effects, gate = tmp_path / "runs", tmp_path / "effects.txt", tmp_path / "gate"
    args = ["--runs-dir", str(runs_dir), "--effects", str(effects), "--plan", "plain"]
    driver = Driver(*args, "--gate", str(gate), "run", "plain")
    driver.wait_for_line("plain: written")
    driver.kill(sig)
    code, out = driver.finish()
    assert code == (KILLED if sig == signal.SIGKILL else 1), out
    assert effects_lines(effects) == ["plain/a", "plain/p"]
    gate.touch()
    code, out = Driver(*args, "resume", "plain").finish()
    assert (code, out) == (1, "status: waiting"), out
    assert effects_lines(effects) == ["plain/a", "plain/p"]
    with sqlite3.connect(db_path(runs_dir)) as conn:
        asked = conn.execute("SELECT step_id, reason_asked, decision FROM approvals").fetchall()
    assert asked == [("p", "rerun", None)]
