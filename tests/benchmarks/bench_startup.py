"""Startup benchmark: how long `import dagentic`, `dagentic --help` and `dagentic validate` take.

Run:  .venv/bin/python tests/benchmarks/bench_startup.py [--repeat 15] [--json FILE]

Each case is a fresh process, started --repeat times after one untimed start (which fills
the file cache); the cases take turns, so the machine's slow moments spread over all.
  floor      python -c pass: the interpreter's own start, the baseline of this run
  import     python -c "import dagentic"
  help       dagentic --help
  validate   dagentic validate plans/hello.yaml

Printed per case: the median wall time and its spread, its ratio to the target and to
the floor, the time it adds to the floor, and the median CPU time (user + system) of the
process, which a busy machine changes far less than the wall time. The processes may write
bytecode (PYTHONDONTWRITEBYTECODE is dropped), as an installed package has it: without it,
every start compiles dagentic's modules again. What each case imports, and so why it takes
what it takes: python -X importtime -c "import dagentic" (or .venv/bin/dagentic under
python -X importtime).

Targets on the 2-core reference machine: import <= 0.25 s, --help <= 0.3 s,
validate <= 0.6 s.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stats import latency_line, make_parser, python_version, summary, verdict, write_results

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
DAGENTIC = str(Path(sys.executable).parent / "dagentic")
HELLO = str(ROOT / "plans" / "hello.yaml")
CASES: dict[str, list[str]] = {
    "floor": [PYTHON, "-c", "pass"],
    "import": [PYTHON, "-c", "import dagentic"],
    "help": [DAGENTIC, "--help"],
    "validate": [DAGENTIC, "validate", HELLO],
}
TARGETS_S = {"import": 0.25, "help": 0.3, "validate": 0.6}


def start(command: list[str], cwd: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of ``command`` from its start to its exit; a failed command
    stops the benchmark (its time would say nothing)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    begin = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - begin
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(
            f"bench_startup: {' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def measure(repeat: int) -> dict[str, list[tuple[float, float]]]:
    """Wall and CPU times of every case, ``repeat`` each, the cases taking turns."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in CASES}
    # The default settings, as a new project has them: a folder without dagentic.toml or
    # pyproject.toml, and no DAGENTIC_* variables.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DAGENTIC_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    with tempfile.TemporaryDirectory() as cwd:
        for command in CASES.values():
            start(command, cwd, env)  # untimed: fills the file cache, writes bytecode
        for _ in range(repeat):
            for name, command in CASES.items():
                times[name].append(start(command, cwd, env))
    return times


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)
    times = measure(args.repeat)
    results: dict[str, Any] = {
        name: {
            **summary([wall for wall, _ in values]),
            "cpu_p50_ms": statistics.median(cpu for _, cpu in values) * 1e3,
        }
        for name, values in times.items()
    }
    floor = results["floor"]["p50_ms"] / 1e3
    print(f"startup benchmark (median of {args.repeat}, Python {python_version()})")
    for name, row in results.items():
        line = latency_line(name, row, width=9, digits=0) + f"  cpu {row['cpu_p50_ms']:4.0f} ms"
        median = row["p50_ms"] / 1e3
        if name in TARGETS_S:
            target = TARGETS_S[name]
            row.update(
                target_s=target,
                ratio_to_target=median / target,
                ratio_to_floor=median / floor,
                added_to_floor_ms=(median - floor) * 1e3,
                met=median <= target,
            )
            line += (
                f"  {row['ratio_to_target']:.2f}x target, {row['ratio_to_floor']:.1f}x floor "
                f"(+{row['added_to_floor_ms']:.0f} ms)"
            )
        print(line)
    for name, target in TARGETS_S.items():
        row = results[name]
        print(
            f"target {name}: median {row['p50_ms'] / 1e3:.3f} s (target <= {target:g} s; "
            f"cpu {row['cpu_p50_ms'] / 1e3:.3f} s): {verdict(row['met'])}"
        )
    write_results(results, args.json_file)
    return results


if __name__ == "__main__":
    main()
