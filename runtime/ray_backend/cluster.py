"""Reaching the Ray cluster: an address that answers within ``ray.connect_timeout``, or a
clear :class:`~dagentic.ClusterError` — never a hang."""

from __future__ import annotations

import os
import socket
import threading
from typing import TYPE_CHECKING, Any

from ..errors import ClusterError

if TYPE_CHECKING:
    from ..settings import RaySettings

__all__ = ["connect", "first_line"]

_lock = threading.Lock()
CLIENT_SERVER_RETRIES = 2  # a ray:// connection whose client server died at its start
MAX_CAUSE = 300  # characters of the head's last traceback line in an error
_CLIENT_SERVER_FAILED = "Starting Ray client server failed"


def connect(settings: RaySettings) -> None:
    """Join the cluster at ``settings.address`` (``HOST:PORT``, ``ray://HOST:PORT`` or
    ``auto``), or start a local Ray when there is none; nothing when this process already
    is connected."""
    try:
        import ray
    except ImportError:
        raise ClusterError(
            "execution.backend is 'ray' but Ray is not installed; install the extra: "
            "pip install 'dagentic[ray]'"
        ) from None
    address = settings.address
    if address is not None and address != "auto":
        _reachable(address, settings.connect_timeout)
    with _lock:
        if ray.is_initialized():
            return
        options: dict[str, Any] = {
            "namespace": settings.namespace,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if address is None:
            options.update(num_cpus=settings.num_cpus, include_dashboard=False)
        else:
            options["address"] = address
        for attempt in range(1 + CLIENT_SERVER_RETRIES):
            try:
                ray.init(**options)
                return
            except Exception as exc:  # noqa: BLE001 - Ray raises many kinds here
                if _client_server_died(exc) and attempt < CLIENT_SERVER_RETRIES:
                    continue  # Ray cleaned up; its next client server starts afresh
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                raise ClusterError(
                    f"cannot use {where}: {type(exc).__name__}: {_cause(exc)}" + _hint(exc)
                ) from None


def _client_server_died(exc: BaseException) -> bool:
    """Ray Client's fault ray-project/ray#63202: the server the head starts for a client
    can die as it is forked (6 of 45 first connections to fresh clusters: bench_ray_client)."""
    return isinstance(exc, ConnectionAbortedError) and _CLIENT_SERVER_FAILED in str(exc)


def _cause(exc: BaseException) -> str:
    """The first line of Ray's message, and for a Ray Client server's failure (a traceback
    from the head after the first line) its last line too: what failed there."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and isinstance(exc, ConnectionAbortedError):
        return f"{lines[0]} {lines[-1][:MAX_CAUSE]}"
    return first_line(exc)


def _reachable(address: str, timeout: float) -> None:
    """Refuse at once an address nothing listens on (Ray itself would retry for a minute)."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"ray.address {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start one "
            "with `ray start --head` or set ray.address (DAGENTIC_RAY__ADDRESS) to its head"
        ) from None


def _hint(exc: BaseException) -> str:
    text = f"{type(exc).__name__} {exc}"
    if _client_server_died(exc):
        return (
            f"; Ray's client server died as it started {1 + CLIENT_SERVER_RETRIES} times "
            "(ray-project/ray#63202): start the head with GRPC_ENABLE_FORK_SUPPORT=false in "
            "its environment, or use the head's GCS address (HOST:6379) instead of ray://"
        )
    if "Token" in text or "auth" in text.lower():
        if os.environ.get("RAY_AUTH_MODE") != "token":
            return (
                "; the cluster uses token authentication: set RAY_AUTH_MODE=token and its "
                "token (RAY_AUTH_TOKEN, or ~/.ray/auth_token)"
            )
        return "; check the cluster's token (RAY_AUTH_TOKEN, or ~/.ray/auth_token)"
    return ""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
