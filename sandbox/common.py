"""What both backends share: the job sent to the harness and the report it sends back.

The host trusts no byte the sandbox writes but one report line that starts with the run's
nonce (see harness.py for how the code is kept from it); a report's file names must be
relative paths inside the work dir.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from dagentic import Limits, ProducedFile, SandboxResult
from pydantic import ValidationError

__all__ = [
    "Job",
    "harness_source",
    "make_job",
    "parse_report",
    "process_alive",
    "process_started",
    "report_cap",
]

SANDBOX_PYTHON = "/usr/bin/python3"
SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/work",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONIOENCODING": "utf-8",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
"""The whole environment of sandboxed code: built from this allowlist, nothing from the
host."""


def process_started(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot), "" if it does not exist:
    with the pid, it names a process even after its pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def process_alive(pid: int, started: str = "") -> bool:
    """Is process ``pid`` (started at ``started``, when given) still running here?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not started or process_started(pid) == started


@cache
def harness_source() -> str:
    return (Path(__file__).parent / "harness.py").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Job:
    """One run for a harness: ``payload`` goes to its stdin, ``nonce`` is the run's
    secret (sent last, after the code exists but out of its reach) that marks the one
    report the host takes."""

    payload: bytes
    nonce: bytes
    limits: Limits

    @property
    def report_bytes(self) -> int:
        return report_cap(self.limits)


def report_cap(limits: Limits) -> int:
    """The most bytes a harness report can take: stdout and stderr as base64 (4/3 of the
    cap each), the result as an escaped JSON string (2x), file contents as base64 (4/3),
    and room for 100 file names and the rest. The harness keeps its report within it."""
    return 6 * int(limits.output_bytes) + 4 * 2**20


def make_job(
    code: str,
    language: str,
    vars: Mapping[str, Any] | None,
    files: Mapping[str, str | bytes] | None,
    limits: Limits,
    *,
    file_contents: bool,
    **flags: bool,
) -> Job:
    """The job for the harness. Raises ValueError for what cannot cross as JSON."""
    if language != "python":
        raise ValueError(f"language {language!r} is not supported; the sandbox runs python")
    for name in files or {}:
        parts = name.replace("\\", "/").split("/")
        if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(
                f"input file name {name!r} must be a relative path without "
                "'..', like 'data/rows.csv'"
            )
    encoded = {
        name: base64.b64encode(data.encode() if isinstance(data, str) else data).decode()
        for name, data in (files or {}).items()
    }
    job = {
        "code": code,
        "vars": dict(vars or {}),
        "files": encoded,
        "limits": {
            "wall_time": limits.wall_time,
            "cpu_time": limits.cpu_time,
            "memory": int(limits.memory),
            "pids": limits.pids,
            "output_bytes": int(limits.output_bytes),
            "disk": int(limits.disk),
            "open_files": limits.open_files,
        },
        "file_contents": file_contents,
        "report_bytes": report_cap(limits),
        **flags,
    }
    try:
        body = json.dumps(job, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"vars must be JSON values: {exc}") from exc
    nonce = secrets.token_hex(16).encode()
    return Job(b"%d\n%s%s\n" % (len(body), body, nonce), nonce, limits)


def _valid_text(value: Any) -> Any:
    """``value`` with lone surrogates (which JSON can carry but UTF-8 cannot) replaced."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_valid_text(k): _valid_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid_text(v) for v in value]
    return value


class _Refused(ValueError):
    """The sandbox's output is not a report of its harness."""


def _unframe(raw: bytes, job: Job) -> dict[str, Any]:
    """The report in ``raw``: exactly one line, the run's nonce, a JSON object."""
    if len(raw) > job.report_bytes:
        raise _Refused(f"the sandbox wrote more than a report can take ({job.report_bytes} bytes)")
    if not raw.startswith(job.nonce + b" "):
        raise _Refused("it does not carry the run's secret (did the code write it?)")
    if raw.count(b"\n") != 1 or not raw.endswith(b"\n"):
        raise _Refused("the sandbox wrote something besides its one report line")
    try:
        report = json.loads(raw[len(job.nonce) + 1 :])
    except (ValueError, RecursionError) as exc:
        raise _Refused(f"it is not JSON: {exc}") from exc
    if not isinstance(report, dict):
        raise _Refused("it is not a JSON object")
    return report


def _text(encoded: Any) -> str:
    return base64.b64decode(encoded, validate=True).decode("utf-8", errors="replace")


def _produced(entry: dict[str, Any]) -> ProducedFile:
    content = entry.get("content")
    encoding = None
    if content is not None:
        data = base64.b64decode(content, validate=True)
        try:
            content, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            encoding = "base64"
    return ProducedFile(
        name=_valid_text(entry["name"]),
        size=entry["size"],
        sha256=entry.get("sha256"),
        content=content,
        encoding=encoding,
    )


def _from_report(report: dict[str, Any], common: dict[str, Any]) -> SandboxResult:
    result = None
    result_error = report.get("result_error")
    if report.get("result_json") is not None:
        try:
            result = _valid_text(json.loads(report["result_json"]))
        except (ValueError, TypeError, RecursionError):
            result_error = "result was not valid JSON"
    return SandboxResult(
        exit_code=report.get("exit_code"),
        exit_reason=report["exit_reason"],
        stdout=_text(report.get("stdout", "")),
        stderr=_text(report.get("stderr", "")),
        stdout_truncated=report.get("stdout_truncated", False),
        stderr_truncated=report.get("stderr_truncated", False),
        duration=report.get("duration", common["duration"]),
        result=result,
        result_error=_valid_text(result_error),
        exception=_valid_text(report.get("exception")),
        files=[_produced(f) for f in report.get("files", [])],
        detail=_valid_text(report.get("detail")),
        backend=common["backend"],
        isolation=common["isolation"],
    )


def parse_report(
    raw: bytes,
    job: Job,
    *,
    backend: str,
    isolation: str,
    duration: float,
    diagnostics: str = "",
    hits: Mapping[str, bool] | None = None,
) -> SandboxResult:
    """The harness's report as a :class:`SandboxResult`.

    Nothing but one line carrying the run's nonce is a report: anything else (a report
    the code forged, a second one, junk around it) makes the run an ``error``. A harness
    that died without a report gives ``killed``. ``hits`` are limits the host saw hit
    (``oom``, ``pids``: cgroup counters), which name the reason of a run that ended
    otherwise."""
    common = {"backend": backend, "isolation": isolation, "duration": duration}
    tail = f" ({diagnostics.strip()[-500:]})" if diagnostics.strip() else ""
    if not raw:
        outcome = SandboxResult(
            exit_code=None,
            exit_reason="killed",
            detail="the sandbox ended without a report" + tail,
            **common,
        )
    else:
        try:
            report = _unframe(raw, job)
            if "exit_reason" in report:
                outcome = _from_report(report, common)
            else:
                outcome = SandboxResult(
                    exit_code=None,
                    exit_reason="error",
                    detail=f"the sandbox's harness failed: {report.get('harness_error')}"[:2000]
                    + tail,
                    **common,
                )
        except (ValueError, TypeError, KeyError, ValidationError, binascii.Error) as exc:
            why = str(exc) if isinstance(exc, _Refused) else f"it is malformed: {exc}"
            outcome = SandboxResult(
                exit_code=None,
                exit_reason="error",
                detail=f"refused the sandbox's report: {why}"[:2000] + tail,
                **common,
            )
    return _with_hits(outcome, job.limits, hits or {})


def _with_hits(outcome: SandboxResult, limits: Limits, hits: Mapping[str, bool]) -> SandboxResult:
    """Name the limit the host saw hit, unless the run ended for a reason of its own
    (its deadline, its output cap)."""
    if outcome.exit_reason not in ("ok", "error", "killed"):
        return outcome
    if hits.get("oom"):
        detail = f"the code ran out of memory (limit {int(limits.memory) >> 20} MiB)"
        return outcome.model_copy(update={"exit_reason": "oom", "detail": detail})
    if hits.get("pids"):
        detail = f"the code hit the limit of {limits.pids} processes and threads"
        return outcome.model_copy(update={"exit_reason": "pids", "detail": detail})
    return outcome
