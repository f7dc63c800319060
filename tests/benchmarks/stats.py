"""What the benchmarks here share: latency summaries, medians per step, the lines that print
them, and the ``--json`` file.

A benchmark imports it as a sibling (``from stats import summary``): run as a script, its
own folder is the first entry of ``sys.path``; under pytest, the smoke tests' folder is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = [
    "describe",
    "latency_line",
    "make_parser",
    "package_version",
    "per_step_us",
    "python_version",
    "summary",
    "verdict",
    "write_results",
]


def summary(times: Sequence[float]) -> dict[str, Any]:
    """Seconds of ``times`` as milliseconds: runs, p50, p95, min, max and mean."""
    ms = sorted(t * 1e3 for t in times)
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) > 1 else ms[0]
    return {
        "runs": len(ms),
        "p50_ms": statistics.median(ms),
        "p95_ms": p95,
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "mean_ms": statistics.fmean(ms),
    }


def describe(values: Sequence[float]) -> dict[str, float | None]:
    """Median, mean, min and max of ``values`` (all None when there are none)."""
    if not values:
        return {"median": None, "mean": None, "min": None, "max": None}
    return {
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def per_step_us(times: Sequence[float], steps: int) -> float:
    """The median of ``times`` (seconds for a run of ``steps`` steps) in µs per step."""
    return statistics.median(times) / steps * 1e6


def latency_line(
    name: str, s: Mapping[str, Any], *, width: int, digits: int, runs: bool = False
) -> str:
    """One printed line of a :func:`summary`: ``name  p50 … ms  p95 … ms  (min …, max …)``."""
    count = f", {s['runs']} runs" if runs else ""
    return (
        f"  {name:{width}} p50 {s['p50_ms']:8.{digits}f} ms  p95 {s['p95_ms']:8.{digits}f} ms  "
        f"(min {s['min_ms']:.{digits}f}, max {s['max_ms']:.{digits}f}{count})"
    )


def verdict(met: bool) -> str:
    """How a target line ends."""
    return "met" if met else "MISSED"


def python_version() -> str:
    return sys.version.split()[0]


def package_version(package: str) -> str:
    """The installed version of ``package``, ``?`` when it is not installed."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first line of the benchmark's docstring, with ``--json``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--json", dest="json_file", help="Also write the results here.")
    return parser


def write_results(results: Mapping[str, Any], json_file: str | None, *, echo: bool = False) -> None:
    """Print ``results`` as JSON (with ``echo``) and write them to ``json_file`` (if any)."""
    if echo:
        print(json.dumps(results, indent=2))
    if json_file:
        with open(json_file, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
