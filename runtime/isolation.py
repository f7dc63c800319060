"""The sandbox contract: what running untrusted code takes and gives back.

Backends (Docker, bubblewrap) live in the ``sandbox`` package and register through the
``register_sandbox_backends`` hook, like tools do; the runtime knows only this contract.
Only JSON crosses the boundary, never pickle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ByteSize, ConfigDict, Field, field_validator

from .errors import DagenticError, FailureMode

__all__ = [
    "ExitReason",
    "Limits",
    "ProducedFile",
    "Sandbox",
    "SandboxBackend",
    "SandboxResult",
    "SandboxUnavailableError",
    "select_sandbox_backend",
]

ExitReason = Literal["ok", "error", "timeout", "oom", "pids", "output_limit", "killed"]


class Limits(BaseModel):
    """Resource limits of one sandboxed run. Sizes take bytes or strings like ``"512MiB"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wall_time: float = Field(30.0, gt=0, description="Seconds of wall-clock time.")
    cpu_time: float = Field(30.0, gt=0, description="Seconds of CPU time.")
    memory: ByteSize = Field(ByteSize(512 * 2**20), description="Memory, swap included.")
    pids: int = Field(64, ge=4, description="Processes and threads at once.")
    output_bytes: ByteSize = Field(ByteSize(2**20), description="Kept of stdout, and of stderr.")
    disk: ByteSize = Field(ByteSize(64 * 2**20), description="Size of the writable work dir.")
    open_files: int = Field(256, ge=16, description="Open file descriptors.")


class ProducedFile(BaseModel):
    """A regular file the code left in its work directory (symlinks are never followed)."""

    name: str = Field(description="Its path relative to the work dir, '/'-separated.")
    size: int = Field(ge=0)
    sha256: str | None = Field(
        None, description="None when hashing it would pass the disk limit (a sparse file)."
    )
    content: str | None = Field(
        None,
        description="Present when asked for, while the files' total stays within "
        "output_bytes: text or base64.",
    )
    encoding: Literal["utf-8", "base64"] | None = None

    @field_validator("name")
    @classmethod
    def _inside_the_work_dir(cls, name: str) -> str:
        parts = name.split("/")
        if name.startswith("/") or "\0" in name or any(p in ("", ".", "..") for p in parts):
            raise ValueError(
                f"produced file name {name!r} is not a relative path inside the work dir"
            )
        return name


class SandboxResult(BaseModel):
    exit_code: int | None = Field(description="The code's exit status; None if it was killed.")
    exit_reason: ExitReason
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration: float = Field(description="Seconds from start to end of the code.")
    result: Any = Field(None, description="The JSON value of the code's `result` variable.")
    result_error: str | None = Field(
        None, description="Why `result` could not be returned (not JSON, too large)."
    )
    exception: dict[str, Any] | None = Field(
        None, description="The exception the code ended with: type, message, errno."
    )
    files: list[ProducedFile] = Field(default_factory=list)
    backend: str = Field(description="The backend that ran the code: docker or process.")
    isolation: str = Field(
        description="What isolated it, e.g. 'container' or 'namespaces+rlimits'."
    )
    detail: str | None = Field(None, description="Why the run ended, in words.")

    @property
    def ok(self) -> bool:
        return self.exit_reason == "ok"

    def failure_mode(self) -> FailureMode | None:
        """How a tool reports this result: None when the code succeeded."""
        return {
            "ok": None,
            "error": FailureMode.TOOL_ERROR,
            "timeout": FailureMode.TIMEOUT,
            "oom": FailureMode.RESOURCE_LIMIT,
            "pids": FailureMode.RESOURCE_LIMIT,
            "output_limit": FailureMode.RESOURCE_LIMIT,
            "killed": FailureMode.TOOL_ERROR,
        }[self.exit_reason]


class Sandbox(Protocol):
    """Runs code in isolation. One call, one fresh environment: nothing persists."""

    name: str

    async def run(
        self,
        code: str,
        *,
        language: str = "python",
        vars: Mapping[str, Any] | None = None,
        files: Mapping[str, str | bytes] | None = None,
        limits: Limits | None = None,
        file_contents: bool = False,
    ) -> SandboxResult:
        """Run ``code`` with ``vars`` bound as variables and ``files`` in its work dir."""

    async def aclose(self) -> None:
        """Release what the sandbox holds (warm containers, for instance)."""


class SandboxUnavailableError(DagenticError, RuntimeError):
    """The requested backend cannot run here (no Docker engine, no bubblewrap...)."""

    failure_mode = FailureMode.POLICY_BLOCKED


@dataclass(frozen=True, slots=True)
class SandboxBackend:
    """A backend declaration, returned by the ``register_sandbox_backends`` hook.

    ``strength`` orders backends for ``auto`` (strongest available first);
    ``available`` says why the backend cannot run here, or None when it can; ``prune``
    removes what dead owners left behind (containers of a process killed with -9, say)
    and says what it removed.
    """

    name: str
    isolation: str
    strength: int
    available: Callable[[Any], Awaitable[str | None]]
    create: Callable[[Any], Sandbox]
    prune: Callable[[Any], Awaitable[list[str]]] | None = None


async def select_sandbox_backend(
    backends: Mapping[str, SandboxBackend], wanted: str, settings: Any
) -> SandboxBackend:
    """The backend to use. ``auto`` takes the strongest available one; a named backend
    that is unavailable is an error — nothing falls back silently to weaker isolation."""
    if wanted != "auto":
        backend = backends.get(wanted)
        if backend is None:
            known = ", ".join(sorted(backends)) or "none installed"
            raise SandboxUnavailableError(f"unknown sandbox backend {wanted!r} (known: {known})")
        reason = await backend.available(settings)
        if reason is not None:
            raise SandboxUnavailableError(
                f"sandbox backend {wanted!r} is not available: {reason}", backend=wanted
            )
        return backend
    reasons = []
    for backend in sorted(backends.values(), key=lambda b: -b.strength):
        reason = await backend.available(settings)
        if reason is None:
            return backend
        reasons.append(f"{backend.name}: {reason}")
    raise SandboxUnavailableError(
        "no sandbox backend is available: " + "; ".join(reasons)
        if reasons
        else "no sandbox backend is installed"
    )
