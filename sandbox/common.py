"""What both backends share: the job sent to the harness and the report it sends back."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from dagentic import Limits, ProducedFile, SandboxResult

__all__ = ["harness_source", "make_job", "parse_report"]

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


@cache
def harness_source() -> str:
    return (Path(__file__).parent / "harness.py").read_text(encoding="utf-8")


def make_job(
    code: str,
    language: str,
    vars: Mapping[str, Any] | None,
    files: Mapping[str, str | bytes] | None,
    limits: Limits,
    *,
    file_contents: bool,
    **flags: bool,
) -> bytes:
    """The JSON job for the harness. Raises ValueError for what cannot cross as JSON."""
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
            "open_files": limits.open_files,
        },
        "file_contents": file_contents,
        **flags,
    }
    try:
        return json.dumps(job, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"vars must be JSON values: {exc}") from exc


def _valid_text(value: Any) -> Any:
    """``value`` with lone surrogates (which JSON can carry but UTF-8 cannot) replaced."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_valid_text(k): _valid_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid_text(v) for v in value]
    return value


def parse_report(
    raw: bytes, *, backend: str, isolation: str, duration: float, diagnostics: str = ""
) -> SandboxResult:
    """The harness's report as a :class:`SandboxResult`. A harness that died without a
    report (the code killed it, say) gives ``exit_reason="killed"``."""
    try:
        report = _valid_text(json.loads(raw))
        if not isinstance(report, dict) or "exit_reason" not in report:
            raise ValueError(
                report.get("harness_error") if isinstance(report, dict) else "no report"
            )
    except ValueError as exc:
        detail = "the sandbox ended without a report"
        if str(exc) and str(exc) != "no report" and not isinstance(exc, json.JSONDecodeError):
            detail += f": {exc}"
        if diagnostics:
            detail += f" ({diagnostics.strip()[-500:]})"
        return SandboxResult(
            exit_code=None,
            exit_reason="killed",
            duration=duration,
            backend=backend,
            isolation=isolation,
            detail=detail,
        )
    result = None
    result_error = report.get("result_error")
    if report.get("result_json") is not None:
        try:
            result = _valid_text(json.loads(report["result_json"]))
        except ValueError:
            result_error = "result was not valid JSON"
    return SandboxResult(
        exit_code=report.get("exit_code"),
        exit_reason=report["exit_reason"],
        stdout=report.get("stdout", ""),
        stderr=report.get("stderr", ""),
        stdout_truncated=report.get("stdout_truncated", False),
        stderr_truncated=report.get("stderr_truncated", False),
        duration=report.get("duration", duration),
        result=result,
        result_error=result_error,
        exception=report.get("exception"),
        files=[ProducedFile(**f) for f in report.get("files", [])],
        backend=backend,
        isolation=isolation,
        detail=report.get("detail"),
    )
