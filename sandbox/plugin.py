"""Registers the sandbox backends, through the same entry-point group as any plugin."""

from __future__ import annotations

from typing import Any

from dagentic import SandboxBackend, hookimpl

from .bubblewrap import ProcessSandbox, process_available
from .container import DockerSandbox, docker_available

__all__ = ["register_sandbox_backends"]


def _docker(settings: Any) -> DockerSandbox:
    config = settings.sandbox
    return DockerSandbox(
        image=config.image, limits=config.limits, pool_size=config.pool_size, cpus=config.cpus
    )


def _process(settings: Any) -> ProcessSandbox:
    return ProcessSandbox(limits=settings.sandbox.limits)


@hookimpl
def register_sandbox_backends() -> list[SandboxBackend]:
    return [
        SandboxBackend(
            name="docker",
            isolation="container",
            strength=2,
            available=docker_available,
            create=_docker,
        ),
        SandboxBackend(
            name="process",
            isolation="namespaces+rlimits",
            strength=1,
            available=process_available,
            create=_process,
        ),
    ]
