"""The Docker backend: one fresh container per run, from a warm pool.

Every container runs with network ``none``, a read-only root filesystem, size-capped
tmpfs for ``/work`` and ``/tmp``, uid 65534, all capabilities dropped, no-new-privileges,
a pids limit, memory with swap equal to memory, a CPU quota, and an environment built
from an allowlist. Its main process is the harness, which waits on stdin for its job: a
warm container has Python (and numpy/pandas) loaded already, so a run costs one attach.
A container serves one run and is then removed — also when the caller is cancelled or
times out.

Nothing outlives its owner for long: the owner attaches to a container's stdin before
starting it and holds that connection while the container waits in the pool; Docker
closes the stdin of a container whose one attached client went away (``StdinOnce``), so
when the owner dies (even by ``kill -9``) its harnesses read end of input, exit, and
Docker removes their containers (``auto_remove``). Containers are labelled with their
owner (host, pid, start time): what is left all the same (a container created but not
yet started) is reaped when the next sandbox starts, or by ``dagentic sandbox prune``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from dagentic import Limits, SandboxResult, SandboxUnavailableError, run_in_thread

from .common import (
    SANDBOX_ENV,
    SANDBOX_PYTHON,
    Job,
    harness_source,
    make_job,
    parse_report,
    process_alive,
    process_started,
)

__all__ = ["DEFAULT_IMAGE", "DockerSandbox", "docker_available", "prune_docker_leftovers"]

DEFAULT_IMAGE = "dagentic-sandbox:latest"
ISOLATION = "container"
LABEL = "dagentic.sandbox"
OWNER_LABEL = "dagentic.owner"
GRACE = 5.0  # seconds the host waits past the wall-clock limit before killing
PRELOAD = "numpy,pandas"
IDLE = 1.0  # seconds without a run after which refills preload numpy/pandas
_TMP_SIZE = 16 * 2**20  # /tmp, and /dev/shm
STOP_WAIT = 2.0  # seconds a container that sent no report has to stop, to tell why


_OWNER = f"{socket.gethostname()}:{os.getpid()}:{process_started(os.getpid())}"


@dataclass(frozen=True, slots=True)
class _Container:
    """A started container, and the attached connection to its harness that its owner
    holds until the run (closing it ends a waiting harness)."""

    id: str
    sock: Any

    def close(self) -> None:
        raw = getattr(self.sock, "_sock", self.sock)
        with contextlib.suppress(Exception):  # wakes a thread still reading it (close does not)
            raw.shutdown(socket.SHUT_RDWR)
        for handle in {id(s): s for s in (self.sock, getattr(self.sock, "_sock", None))}.values():
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()


def _client() -> Any:
    import docker  # imported late: the process backend must not need it

    return docker.from_env(timeout=30)


async def docker_available(settings: Any = None) -> str | None:
    """None when a Docker engine and the sandbox image are there, else why not."""
    image = getattr(getattr(settings, "sandbox", None), "image", DEFAULT_IMAGE)

    def probe() -> str | None:
        try:
            import docker
            import docker.errors
        except ImportError:
            return "the docker Python package is not installed"
        try:
            client = docker.from_env(timeout=5)
            client.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
            return f"no Docker engine answers ({type(exc).__name__}); start dockerd"
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            return f"the sandbox image {image} is missing; build it with sandbox/image/build.sh"
        finally:
            client.close()
        return None

    return await run_in_thread(probe)


class DockerSandbox:
    """Runs code in Docker containers, keeping ``pool_size`` warm ones ready."""

    name = "docker"

    def __init__(
        self,
        *,
        image: str = DEFAULT_IMAGE,
        limits: Limits | None = None,
        pool_size: int = 2,
        cpus: float = 1.0,
    ) -> None:
        self.image = image
        self.limits = limits or Limits()
        self.pool_size = pool_size
        self.cpus = cpus
        self._warm: queue.SimpleQueue[_Container] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._filler: threading.Thread | None = None
        self._last_run = 0.0
        self._closed = False
        self._client_local = threading.local()
        self._reaped = False
        self._doomed: queue.SimpleQueue[_Container | None] = queue.SimpleQueue()
        self._remover: threading.Thread | None = None
        atexit.register(self._close_now)

    # -- public -----------------------------------------------------------------------

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
        limits = limits or self.limits
        job = make_job(code, language, vars, files, limits, file_contents=file_contents)
        start = self._last_run = time.monotonic()
        container = None
        if limits == self.limits:
            container = await run_in_thread(self._take_warm)
        if container is None:
            container = await run_in_thread(self._start, limits, False)
        self._fill_soon()
        timed_out = False
        hits = None
        try:
            since = time.time()
            with anyio.move_on_after(limits.wall_time + GRACE) as deadline:
                raw, diagnostics = await run_in_thread(
                    self._exchange, container, job, abandon_on_cancel=True
                )
            timed_out = deadline.cancelled_caught
            if not timed_out and not raw.endswith(b"\n"):
                # No whole report: the harness died. Was it the OOM killer? What the code
                # filled memory with outside any process (files in /work, /tmp, /dev/shm:
                # their pages, inodes and names count against the container's memory)
                # outlives the code, and the harness is the next to go.
                with anyio.move_on_after(STOP_WAIT + 3):
                    oom = await run_in_thread(
                        self._oom_killed, container, since, abandon_on_cancel=True
                    )
                    hits = {"oom": oom}
        finally:
            # Removed off the caller's path; killing it also ends an abandoned exchange.
            self._discard(container)
        duration = time.monotonic() - start
        if timed_out:
            return SandboxResult(
                exit_code=None,
                exit_reason="timeout",
                duration=duration,
                backend=self.name,
                isolation=ISOLATION,
                detail=f"the sandbox did not finish within {limits.wall_time + GRACE:g}s",
            )
        return parse_report(
            raw,
            job,
            backend=self.name,
            isolation=ISOLATION,
            duration=duration,
            diagnostics=diagnostics,
            hits=hits,
        )

    async def aclose(self) -> None:
        await run_in_thread(self._close_now)

    def warm(self) -> None:
        """Start filling the pool now rather than at the first run."""
        self._fill_soon()

    # -- containers -------------------------------------------------------------------

    @property
    def _api(self) -> Any:
        client = getattr(self._client_local, "client", None)
        if client is None:
            client = self._client_local.client = _client()
        return client.api

    def _start(self, limits: Limits, preload: bool) -> _Container:
        """Create, attach to and start a container whose harness waits for a job on
        stdin."""
        if not self._reaped:
            self._reaped = True
            reap_leftovers(self._api)
        api = self._api
        from docker.types import Ulimit

        host_config = api.create_host_config(
            network_mode="none",
            read_only=True,
            tmpfs={
                "/work": f"size={int(limits.disk)},mode=1777",
                "/tmp": f"size={_TMP_SIZE},mode=1777",
            },
            shm_size=_TMP_SIZE,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=limits.pids + 4,  # the harness and its pipes' readers
            mem_limit=int(limits.memory),
            memswap_limit=int(limits.memory),
            nano_cpus=int(self.cpus * 1e9),
            ulimits=[
                Ulimit(name="nofile", soft=limits.open_files + 64, hard=limits.open_files + 64)
            ],
            ipc_mode="private",
            auto_remove=True,
        )
        command = [SANDBOX_PYTHON, "-I", "-S", "-c", harness_source()]
        if preload:
            command += ["--preload", PRELOAD]
        try:
            created = api.create_container(
                self.image,
                command=command,
                user="65534:65534",
                working_dir="/work",
                environment=dict(SANDBOX_ENV),
                hostname="sandbox",
                stdin_open=True,  # and StdinOnce: stdin closes when the owner detaches
                detach=False,
                network_disabled=True,
                labels={LABEL: "1", OWNER_LABEL: _OWNER},
                host_config=host_config,
            )
        except Exception as exc:
            raise SandboxUnavailableError(
                f"the Docker engine did not create a sandbox container from {self.image}: {exc}",
                backend=self.name,
            ) from exc
        container = _Container(created["Id"], None)
        try:
            sock = api.attach_socket(
                container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            container = _Container(container.id, sock)
            api.start(container.id)
        except Exception as exc:
            self._remove(container)
            raise SandboxUnavailableError(
                f"the Docker engine did not start a sandbox container: {exc}", backend=self.name
            ) from exc
        return container

    def _exchange(self, container: _Container, job: Job) -> tuple[bytes, str]:
        """Send the job to the harness and read its report (blocking). Reading stops at
        the report's end, not at the container's (which takes a quarter of a second
        more): what came before it or with it is refused with it, and nothing can
        write after it (the harness has ended every other process, and then itself).
        One byte past a report's size is enough to refuse it."""
        from docker.utils.socket import frames_iter

        cap = job.report_bytes + 1
        out, err = bytearray(), bytearray()
        raw = getattr(container.sock, "_sock", container.sock)
        try:
            raw.sendall(job.payload)
            raw.shutdown(socket.SHUT_WR)
            for stream, data in frames_iter(container.sock, tty=False):
                target, room = (out, cap) if stream == 1 else (err, 65536)
                target += data[: room - len(target)]
                if len(out) >= cap or (stream == 1 and b"\n" in data):
                    break
        except Exception as exc:  # noqa: BLE001 - the engine or the container went away
            err += f"\n{type(exc).__name__}: {exc}".encode()
        finally:
            container.close()
        return bytes(out), err.decode(errors="replace")

    def _oom_killed(self, container: _Container, since: float) -> bool:
        """Did the kernel's OOM killer end a process of ``container`` since ``since`` (a
        wall-clock time)? Asked of Docker once the container stopped, or ``STOP_WAIT``
        seconds passed: its ``State.OOMKilled`` while the container is there, else its
        ``oom`` events, which outlive it (a stopped container is removed at once:
        ``auto_remove``)."""
        api = self._api
        with contextlib.suppress(Exception):  # stopped, or removed already
            api.wait(container.id, timeout=STOP_WAIT, condition="not-running")
        with contextlib.suppress(Exception):  # removed meanwhile: the events tell
            if api.inspect_container(container.id)["State"].get("OOMKilled"):
                return True
        try:
            events = api.events(
                since=since - 1,
                until=time.time() + 0.1,  # past events, and a moment for a late one
                filters={"container": container.id, "event": "oom"},
                decode=True,
            )
        except Exception:  # noqa: BLE001 - no engine to ask: the run stays "killed"
            return False
        # An engine whose clock runs ahead would stream until its "until": not for long.
        timer = threading.Timer(STOP_WAIT, events.close)
        timer.start()
        try:
            return any(True for _ in events)
        except Exception:  # noqa: BLE001 - closed by the timer, or the engine went away
            return False
        finally:
            timer.cancel()
            events.close()

    def _discard(self, container: _Container) -> None:
        """Queue a container for removal by a background thread (started on first use)."""
        container.close()
        self._doomed.put(container)
        with self._lock:
            if self._remover is None or not self._remover.is_alive():
                self._remover = threading.Thread(
                    target=self._remove_queued, daemon=True, name="dagentic-sandbox-remover"
                )
                self._remover.start()

    def _remove_queued(self) -> None:
        while (container := self._doomed.get()) is not None:
            self._remove(container)

    def _remove(self, container: _Container) -> None:
        container.close()
        try:
            self._api.remove_container(container.id, force=True, v=True)
        except Exception:  # noqa: BLE001 - gone, going (auto_remove), or no engine
            with contextlib.suppress(Exception):  # done when it is gone, not going
                self._api.wait(container.id, timeout=10, condition="removed")

    # -- the warm pool ----------------------------------------------------------------

    def _take_warm(self) -> _Container | None:
        while True:
            try:
                container = self._warm.get_nowait()
            except queue.Empty:
                return None
            if self._is_waiting(container):
                return container
            self._remove(container)

    def _is_waiting(self, container: _Container) -> bool:
        try:
            return bool(self._api.inspect_container(container.id)["State"]["Running"])
        except Exception:  # noqa: BLE001 - a vanished container is simply not usable
            return False

    def _fill_soon(self) -> None:
        """Start the filler thread if the pool is short. One container is prepared at a
        time, so refills do not crowd out the runs they are meant to speed up."""
        with self._lock:
            if self._closed or self._filler is not None or self._warm.qsize() >= self.pool_size:
                return
            self._filler = threading.Thread(
                target=self._fill, daemon=True, name="dagentic-sandbox-pool"
            )
            self._filler.start()

    def _fill(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closed or self._warm.qsize() >= self.pool_size:
                        return
                # Preloading numpy/pandas costs ~0.5 s of CPU: worth it between bursts
                # of runs, not while runs keep coming and would wait for the CPU.
                preload = time.monotonic() - self._last_run > IDLE
                try:
                    container = self._start(self.limits, preload)
                except Exception:  # noqa: BLE001 - runs start cold instead
                    return
                with self._lock:
                    if not self._closed:
                        self._warm.put(container)
                        continue
                self._remove(container)
                return
        finally:
            with self._lock:
                self._filler = None

    def _close_now(self) -> None:
        with self._lock:
            self._closed = True
            remover, filler = self._remover, self._filler
        if filler is not None:
            filler.join(timeout=60)  # a container being prepared is removed by the filler
        for pending in (self._warm, self._doomed):
            while True:
                try:
                    container = pending.get_nowait()
                except queue.Empty:
                    break
                if container is not None:
                    self._remove(container)
        if remover is not None and remover.is_alive():
            self._doomed.put(None)
            remover.join(timeout=30)


def reap_leftovers(api: Any) -> list[str]:
    """Remove sandbox containers (running, waiting or never started) whose owning process
    on this host is gone; their ids. Containers of other hosts are left alone."""
    host = socket.gethostname()
    removed = []
    for info in api.containers(all=True, filters={"label": LABEL}):
        owner = (info.get("Labels") or {}).get(OWNER_LABEL, "")
        owner_host, pid, started = [*owner.split(":"), "", ""][:3]
        if owner_host != host or not pid.isdigit() or process_alive(int(pid), started):
            continue
        try:
            api.remove_container(info["Id"], force=True, v=True)
            removed.append(info["Id"])
        except Exception:  # noqa: BLE001 - raced with another reaper, or auto-removed
            continue
    return removed


async def prune_docker_leftovers(settings: Any = None) -> list[str]:
    """What ``dagentic sandbox prune`` does for Docker: remove the sandbox containers of
    dagentic processes that died; a line for each."""

    def prune() -> list[str]:
        try:
            client = _client()
            client.ping()
        except Exception as exc:
            raise SandboxUnavailableError(
                f"cannot look for leftover containers: no Docker engine answers ({exc})",
                backend="docker",
            ) from exc
        try:
            return [f"docker container {cid[:12]}" for cid in reap_leftovers(client.api)]
        finally:
            client.close()

    return await run_in_thread(prune)
