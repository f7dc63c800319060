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
        try:
            ray.init(**options)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds here
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise ClusterError(
                f"cannot use {where}: {type(exc).__name__}: {first_line(exc)}" + _hint(exc)
            ) from None


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
