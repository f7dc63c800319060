"""Registers the sandbox backends, through the same entry-point group as any plugin.

The backends' modules load when a backend is probed or created, not with the plugin:
every command that lists tools loads every plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dagentic import SandboxBackend, hookimpl

if TYPE_CHECKING:
    from .bubblewrap import ProcessSandbox
    from .container import DockerSandbox

__all__ = ["register_sandbox_backends"]


async def _docker_available(settings: Any = None) -> str | None:
    from .container import docker_available

    return await docker_available(settings)


async def _process_available(settings: Any = None) -> str | None:
    from .bubblewrap import process_available

    return await process_available(settings)


async def _docker_prune(settings: Any = None) -> list[str]:
    from .container import prune_docker_leftovers

    return await prune_docker_leftovers(settings)


async def _process_prune(settings: Any = None) -> list[str]:
    from .bubblewrap import prune_process_leftovers

    return await prune_process_leftovers(settings)


def _docker(settings: Any) -> DockerSandbox:
    from .container import DockerSandbox

    config = settings.sandbox
    return DockerSandbox(
        image=config.image, limits=config.limits, pool_size=config.pool_size, cpus=config.cpus
    )


def _process(settings: Any) -> ProcessSandbox:
    from .bubblewrap import ProcessSandbox

    return ProcessSandbox(limits=settings.sandbox.limits)


@hookimpl
def register_sandbox_backends() -> list[SandboxBackend]:
    return [
        SandboxBackend(
            name="docker",
            isolation="container",
            strength=2,
            available=_docker_available,
            create=_docker,
            prune=_docker_prune,
        ),
        SandboxBackend(
            name="process",
            isolation="namespaces+rlimits",
            strength=1,
            available=_process_available,
            create=_process,
            prune=_process_prune,
        ),
    ]
