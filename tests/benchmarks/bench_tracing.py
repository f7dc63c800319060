"""Tracing benchmark: what spans and metrics add to the executor's cost per no-op step.

Run:  .venv/bin/python tests/benchmarks/bench_tracing.py [--repeat 7] [--json FILE]

Modes, each on the same plans of no-op steps (chain-2000, fanout-2000, layered-20x100):
  off            tracing off (Executor(tracing=None))
  noop           spans to an exporter that drops them, no metrics
  noop+metrics   the same, plus metrics derived from the spans (in-memory reader)
  jsonl          spans to a JSONL file per run, no metrics
  jsonl+metrics  the default settings: a JSONL file per run plus metrics to metrics.jsonl

Two times per run: "loop" is the run as its caller sees it (spans are exported by a
background thread, partly while the run goes on); "total" also waits until every span of
the run is exported (and its metrics recorded), so it counts all the CPU tracing costs.

Target on the 2-core reference machine: tracing adds at most 30 µs per step (total).
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_executor import TOOLS, chain, fanout, layered
from dagentic import Executor, Settings, compile_plan
from dagentic.spans import FastTracerProvider
from dagentic.tracing import Tracing, tracing_from_settings
from stats import make_parser, per_step_us, verdict, write_results

TARGET_ADDED_US = 30.0


class DropSpans(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def modes(runs_dir: Path) -> dict[str, Tracing | None]:
    settings = Settings(_env_prefix="DAGENTIC_BENCH_UNUSED_", runs_dir=runs_dir)  # type: ignore[call-arg]
    spans_only = settings.model_copy(
        update={
            "tracing": settings.tracing.model_copy(update={"metrics": False}),
            "runs_dir": runs_dir / "spans-only",
        }
    )
    return {
        "off": None,
        "noop": Tracing(FastTracerProvider([DropSpans()])),
        "noop+metrics": Tracing(
            FastTracerProvider([DropSpans()]),
            MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False),
        ),
        "jsonl": tracing_from_settings(spans_only),
        "jsonl+metrics": tracing_from_settings(settings),
    }


def time_modes(
    plan: Any, tracings: dict[str, Tracing | None], repeat: int
) -> dict[str, dict[str, float]]:
    """Median loop and total time per step of each mode, the modes taking turns so that
    the machine's slow moments spread over all of them."""
    compiled = compile_plan(plan, TOOLS)
    executors = {
        name: Executor(TOOLS, tracing=tracing, journal=None) for name, tracing in tracings.items()
    }
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in tracings}

    def once(name: str) -> tuple[float, float]:
        executor, tracing = executors[name], tracings[name]

        async def run() -> tuple[float, float]:
            begin = time.perf_counter()
            result = await executor.run(compiled)
            ran = time.perf_counter() - begin
            assert result.succeeded, result.error
            if tracing is not None:
                tracing.flush()  # blocking on purpose: nothing else runs meanwhile
            return ran, time.perf_counter() - begin

        gc.collect()
        return anyio.run(run)

    for name in tracings:
        once(name)  # warm up
    names = list(tracings)
    for turn in range(repeat):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            ran, total = once(name)
            times[name][0].append(ran)
            times[name][1].append(total)
    n = len(plan.steps)
    return {
        name: {
            "loop_us_per_step": per_step_us(loop, n),
            "total_us_per_step": per_step_us(total, n),
        }
        for name, (loop, total) in times.items()
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="Tiny sizes (smoke test).")
    args = parser.parse_args(argv)
    quick, repeat = args.quick, (1 if args.quick else args.repeat)
    plans = [
        chain(50 if quick else 2000),
        fanout(50 if quick else 2000),
        layered(5 if quick else 20, 10 if quick else 100),
    ]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as runs_dir:
        tracings = modes(Path(runs_dir))
        for plan in plans:
            row = time_modes(plan, tracings, repeat)
            off = row["off"]
            for name in tracings:
                if name != "off":
                    row[name]["added_total_us"] = (
                        row[name]["total_us_per_step"] - off["total_us_per_step"]
                    )
                    row[name]["added_loop_us"] = (
                        row[name]["loop_us_per_step"] - off["loop_us_per_step"]
                    )
            results[plan.name] = row
            print(
                f"{plan.name:<16}"
                + "  ".join(
                    f"{name} {r['total_us_per_step']:6.1f} µs/step"
                    + (
                        f" (+{r['added_total_us']:.1f}; loop +{r['added_loop_us']:.1f})"
                        if name != "off"
                        else ""
                    )
                    for name, r in row.items()
                )
            )
        for tracing in tracings.values():  # before their runs dir goes
            if tracing is not None:
                tracing.shutdown()
    worst = {
        name: max(results[p.name][name]["added_total_us"] for p in plans)
        for name in ("noop", "noop+metrics", "jsonl", "jsonl+metrics")
    }
    results["targets"] = {
        name: {"worst_added_us": value, "target": TARGET_ADDED_US, "met": value <= TARGET_ADDED_US}
        for name, value in worst.items()
    }
    for name, target in results["targets"].items():
        print(
            f"target {name}: tracing adds {target['worst_added_us']:.1f} µs/step at worst "
            f"(target <= {TARGET_ADDED_US:g}): {verdict(target['met'])}"
        )
    write_results(results, args.json_file)
    return results


if __name__ == "__main__":
    main()
