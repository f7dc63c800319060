"""``dagentic serve`` under load: plan runs submitted at once through the HTTP API to a real
server process, then the same with the server killed (kill -9) halfway and started again.

Run:  .venv/bin/python tests/benchmarks/bench_serve.py [--runs 200] [--steps 10] [--json FILE]

Each run is a chain of ``--steps`` ``notify.log`` calls (a tool that writes: each step's
start waits for the journal's commit), tagged with its number as an input. Phases, each
on a journal of its own:

  steady   every run submitted at once (one connection each); timed from the first
           submit to the last run's end in the journal
  kill -9  the same, the server killed with SIGKILL once half of all steps are done
           (``--kill-at``: the share; ``--kill-on-answer N``: at the N-th answer, while
           most submits are in flight), most runs halfway, then started again on the same
           journal: it resumes the interrupted runs. The submits
           that got no answer are sent again unless the journal has their run (the server
           may have taken a run whose answer was lost)

Checked from the journal after each phase: every number has exactly one run, every run
succeeded, and no step ran to completion twice (a ``finished`` event with status
succeeded from a call, not from a reused result, once per step). The submit latency (time
to the 202, which is sent once the journal has the run) is shown as p50 and p95; the
throughput in runs and steps per second.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx

DAGENTIC = Path(sys.executable).parent / "dagentic"
TOKEN = "bench-serve-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def plan_text(steps: int) -> str:
    lines = ["version: 1", "name: bench", "inputs:", "  n: {type: integer}", "steps:"]
    for index in range(steps):
        lines += [f"  - id: s{index}", "    tool: notify.log"]
        previous = f" after ${{{{ steps.s{index - 1}.output.level }}}}" if index else ""
        lines.append(f'    args: {{message: "run ${{{{ inputs.n }}}} step {index}{previous}"}}')
    return "\n".join(lines) + "\n"


class Server:
    """``dagentic serve`` in a process of its own, in ``folder`` (its journal and plans)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen[str] | None = None
        self.log: Any = None
        self.url = ""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAGENTIC_")}
        env.update(
            DAGENTIC_RUNS_DIR=str(self.folder / "runs"),
            DAGENTIC_SERVE__TOKEN=TOKEN,
            DAGENTIC_LIBRARY__FOLDERS=json.dumps([str(self.folder / "plans")]),
            DAGENTIC_LOG_LEVEL="warning",
            DAGENTIC_CACHE__ENABLED="false",
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self) -> None:
        self.close()
        log = self.log = (self.folder / "server.log").open("a", encoding="utf-8")
        self.process = subprocess.Popen(
            [str(DAGENTIC), "serve", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=self.folder,
            env=self.env(),
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("dagentic serve: http://"):
            raise RuntimeError(f"dagentic serve did not start: {line!r} (see {log.name})")
        self.url = line.split()[2]
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}api/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("dagentic serve did not answer within 60 s")
            time.sleep(0.05)

    def close(self) -> None:
        """Let go of the process's pipe and log (it has ended)."""
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        if self.log is not None:
            self.log.close()
            self.log = None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self.close()


def journal(folder: Path) -> sqlite3.Connection:
    path = folder / "runs" / "journal.sqlite"
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def runs_by_number(folder: Path) -> dict[int, list[tuple[str, str]]]:
    """Each run number's runs in the journal: (run id, status)."""
    with journal(folder) as db:
        rows = db.execute("SELECT run_id, status, inputs_json FROM runs WHERE plan_name = 'bench'")
        found: dict[int, list[tuple[str, str]]] = {}
        for run_id, status, inputs in rows:
            found.setdefault(json.loads(inputs)["n"], []).append((run_id, status))
    return found


async def submit_all(
    url: str,
    numbers: list[int],
    kill_at: int | None = None,
    server: Server | None = None,
    folder: Path | None = None,
    kill_on_answer: int | None = None,
) -> tuple[dict[int, str], list[float], list[int]]:
    """Submit a run per number at once: the run ids answered, the latencies of the
    answered submits, and the numbers whose submit got no answer. With ``kill_at``,
    ``server`` is killed once the journal in ``folder`` has that many steps done; with
    ``kill_on_answer``, once that many submits were answered."""
    answered: dict[int, str] = {}
    latencies: list[float] = []
    lost: list[int] = []
    limits = httpx.Limits(max_connections=len(numbers) + 8, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=url, headers=AUTH, limits=limits, timeout=httpx.Timeout(120, connect=30)
    ) as client:

        async def one(n: int) -> None:
            t0 = time.perf_counter()
            try:
                reply = await client.post("/api/runs", json={"plan": "bench", "inputs": {"n": n}})
            except httpx.TransportError:
                lost.append(n)
                return
            if reply.status_code != 202:
                raise RuntimeError(f"submit {n}: {reply.status_code} {reply.text}")
            latencies.append(time.perf_counter() - t0)
            answered[n] = reply.json()["run_id"]
            if (
                kill_on_answer is not None
                and server is not None
                and len(answered) == kill_on_answer
            ):
                server.kill()

        async def killer() -> None:
            assert server is not None and folder is not None and kill_at is not None
            while await anyio.to_thread.run_sync(steps_done, folder) < kill_at:
                await anyio.sleep(0.01)
            server.kill()

        async with anyio.create_task_group() as tg:
            if kill_at is not None:
                tg.start_soon(killer)
            for n in numbers:
                tg.start_soon(one, n)
    return answered, latencies, lost


def steps_done(folder: Path) -> int:
    """Steps the journal has as done (run to completion), in all."""
    try:
        with journal(folder) as db:
            return int(
                db.execute(
                    "SELECT count(*) FROM events WHERE kind = 'finished' AND status = 'succeeded'"
                ).fetchone()[0]
            )
    except sqlite3.OperationalError:  # the journal is not made yet
        return 0


def wait_all_ended(folder: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with journal(folder) as db:
            done = db.execute(
                "SELECT count(*) FROM runs WHERE plan_name = 'bench' AND status IN "
                "('succeeded', 'failed', 'cancelled', 'waiting')"
            ).fetchone()[0]
        if done >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {count} runs ended within {timeout:g} s")
        time.sleep(0.1)


def check(folder: Path, numbers: list[int], steps: int) -> dict[str, Any]:
    """What the journal says of the phase's runs; raises if one is lost, doubled, failed,
    or has a step that ran to completion twice."""
    by_number = runs_by_number(folder)
    missing = sorted(set(numbers) - set(by_number))
    doubled = sorted(n for n, runs in by_number.items() if len(runs) > 1)
    failed = sorted(n for n, runs in by_number.items() if any(s != "succeeded" for _, s in runs))
    with journal(folder) as db:
        completions = Counter(
            db.execute(
                "SELECT run_id, step_id FROM events WHERE kind = 'finished' AND status = "
                "'succeeded' AND attempt > 0"
            ).fetchall()
        )
        reused = db.execute(
            "SELECT count(DISTINCT run_id) FROM events WHERE kind = 'reused'"
        ).fetchone()[0]
    twice = [key for key, count in completions.items() if count > 1]
    expected = len(numbers) * steps
    if missing or doubled or failed or twice or len(completions) != expected:
        raise AssertionError(
            f"missing {missing[:10]}, doubled {doubled[:10]}, failed {failed[:10]}, steps "
            f"completed twice {twice[:10]}, steps completed {len(completions)} of {expected}"
        )
    return {"runs": len(by_number), "resumed_runs": reused}


def run_span(folder: Path) -> tuple[float, float]:
    """When the first run started and the last one ended, in the journal."""
    with journal(folder) as db:
        first, last = db.execute(
            "SELECT min(created_at), max(finished_at) FROM runs WHERE plan_name = 'bench'"
        ).fetchone()
    return float(first), float(last)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)] if ordered else 0.0


def phase(
    folder: Path,
    runs: int,
    steps: int,
    *,
    kill: bool,
    kill_at: float = 0.5,
    kill_on_answer: int | None = None,
    alone: int = 20,
) -> dict[str, Any]:
    (folder / "plans").mkdir(parents=True)
    (folder / "plans" / "bench.yaml").write_text(plan_text(steps), encoding="utf-8")
    numbers = list(range(runs))
    server = Server(folder)
    server.start()
    result: dict[str, Any] = {
        "phase": "kill -9" if kill else "steady",
        "runs": runs,
        "steps": steps,
    }
    try:
        t0 = time.time()
        answered, latencies, lost = anyio.run(
            submit_all,
            server.url,
            numbers,
            max(1, round(runs * steps * kill_at)) if kill and kill_on_answer is None else None,
            server,
            folder,
            kill_on_answer if kill else None,
        )
        if kill:
            result["answered_before_kill"] = len(answered)
            result["unanswered"] = len(lost)
            with journal(folder) as db:
                states = dict(
                    db.execute(
                        "SELECT status, count(*) FROM runs WHERE plan_name = 'bench' "
                        "GROUP BY status"
                    ).fetchall()
                )
            result["interrupted"] = states.get("running", 0)
            result["finished_before_kill"] = states.get("succeeded", 0)
            server.start()  # the same journal: it resumes what was interrupted
            known = runs_by_number(folder)
            result["taken_without_answer"] = sum(1 for n in lost if n in known)
            again = [n for n in lost if n not in known]
            more, more_latencies, still_lost = anyio.run(submit_all, server.url, again)
            if still_lost:
                raise RuntimeError(f"{len(still_lost)} submits got no answer after the restart")
            answered.update(more)
            latencies += more_latencies
            result["submitted_again"] = len(again)
        wait_all_ended(folder, runs, timeout=max(120.0, runs * steps * 0.2))
        first_start, last_end = run_span(folder)
        if not kill:  # one submit at a time, on the idle server: the latency of one alone
            one_by_one = list(range(runs, runs + alone))
            single: list[float] = []
            for n in one_by_one:
                single += anyio.run(submit_all, server.url, [n])[1]
            wait_all_ended(folder, runs + alone, timeout=120.0)
            numbers += one_by_one
            result["alone"] = alone
            result["alone_p50_ms"] = percentile(single, 0.50) * 1000
            result["alone_p95_ms"] = percentile(single, 0.95) * 1000
        found = check(folder, numbers, steps)
    finally:
        server.stop()
    seconds = last_end - min(first_start, t0)
    result.update(
        resumed_runs=found["resumed_runs"],
        submit_p50_ms=percentile(latencies, 0.50) * 1000,
        submit_p95_ms=percentile(latencies, 0.95) * 1000,
        submit_mean_ms=statistics.fmean(latencies) * 1000 if latencies else 0.0,
        seconds=seconds,
        runs_per_s=runs / seconds,
        steps_per_s=runs * steps / seconds,
        all_succeeded_once=True,
    )
    return result


def describe(r: dict[str, Any]) -> str:
    rate = (
        f"{r['runs_per_s']:.1f} runs/s ({r['steps_per_s']:.0f} steps/s) over {r['seconds']:.2f} s"
    )
    if r["phase"] != "kill -9":
        line = (
            f"{r['phase']:<8} {r['runs']} runs x {r['steps']} steps: submit p50 "
            f"{r['submit_p50_ms']:.1f} ms, p95 {r['submit_p95_ms']:.1f} ms; {rate}"
            f"\n         one submit alone ({r['alone']}, one at a time): p50 "
            f"{r['alone_p50_ms']:.1f} ms, p95 {r['alone_p95_ms']:.1f} ms"
        )
    else:
        line = (
            f"{r['phase']:<8} {r['runs']} runs x {r['steps']} steps: {rate}, the restart "
            f"included\n         killed with {r['answered_before_kill']} submits answered, "
            f"{r['interrupted']} runs running and {r['finished_before_kill']} finished; "
            f"{r['unanswered']} submits got no answer ({r['taken_without_answer']} of them "
            f"in the journal all the same, {r['submitted_again']} sent again); "
            f"{r['resumed_runs']} runs reused steps done before the kill"
        )
    return line + "\n         every run succeeded, once; no step completed twice"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--alone", type=int, default=20, help="Submits one at a time after the load (20)."
    )
    parser.add_argument(
        "--kill-on-answer",
        type=int,
        metavar="N",
        help="Kill the server at the N-th answer instead, while submits are in flight.",
    )
    parser.add_argument(
        "--kill-at",
        type=float,
        default=0.5,
        help="The share of all steps done when the server is killed (default: 0.5).",
    )
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="dagentic-bench-serve-") as tmp:
        for kill in (False, True):
            found = phase(
                Path(tmp) / ("kill" if kill else "steady"),
                args.runs,
                args.steps,
                kill=kill,
                kill_at=args.kill_at,
                kill_on_answer=args.kill_on_answer,
                alone=args.alone,
            )
            results["kill" if kill else "steady"] = found
            print(describe(found), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
