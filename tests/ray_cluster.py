"""A real two-node Ray cluster for tests, inside a network namespace of its own.

Ray binds the machine's own address whatever it is told, so the cluster lives in a network
namespace this module creates (``ip netns add``) where only loopback exists: the head and
a second raylet both on 127.0.0.1, each with a custom resource naming it (``node_head``,
``node_b``) so a test can place calls. The test process joins the namespace only while a
Ray test runs (:meth:`RayCluster.inside`, per thread, with ``setns``): every other test
keeps the machine's own loopback. Token authentication is on, with a token made here.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

CLONE_NEWNET = 0x40000000
ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")


class RayCluster:
    def __init__(self, name: str, temp_dir: Path) -> None:
        self.name = name
        self.temp_dir = temp_dir
        self.port = 6390
        self.address = f"127.0.0.1:{self.port}"
        self.client_port = 10001  # the head's Ray Client server (below worker ports)
        self.client_address = f"ray://127.0.0.1:{self.client_port}"
        self.token = secrets.token_hex(32)
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0",
            # keep idle workers: a new one imports dagentic on its first call (docs/how-to/ray.md)
            "RAY_idle_worker_killing_time_threshold_ms": "600000",
            # the head's Ray Client server forks a server per client, and with gRPC's fork
            # handlers on that one can die at once (ray-project/ray#63202): 6 of 45 first
            # ray:// connections to a fresh cluster failed, 0 of 60 with this (bench_ray_client)
            "GRPC_ENABLE_FORK_SUPPORT": "false",
            # tools defined in test modules are pickled by reference: workers import them
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._netns = Path("/run/netns") / name
        self._next_port = 52400

    # -- the namespace -------------------------------------------------------------------

    def create(self) -> None:
        self.destroy()
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.exec(["ip", "link", "set", "lo", "up"], check=True)

    def exec(self, command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            ["ip", "netns", "exec", self.name, *command],
            env=self.env,
            text=True,
            capture_output=True,
            **options,
        )

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """This thread in the cluster's namespace for the block (its sockets, and the
        threads and processes it starts meanwhile, are there for good)."""
        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        there = os.open(self._netns, os.O_RDONLY)
        try:
            self._setns(there)
            try:
                yield
            finally:
                self._setns(here)
        finally:
            os.close(here)
            os.close(there)

    def _setns(self, fd: int) -> None:
        if self._libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")

    # -- nodes ---------------------------------------------------------------------------

    def start(self) -> None:
        self.create()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.temp_dir.mkdir(parents=True)
        self.start_node("node_head", head=True)
        self.start_node("node_b")

    def start_node(self, resource: str, *, head: bool = False, cpus: int = 1) -> int:
        """Start a node offering one CPU and ``resource: 100``; returns its raylet's port."""
        manager_port = self._port()
        command = [
            str(RAY),
            "start",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={cpus}",
            f"--resources={json.dumps({resource: 100})}",
            f"--node-manager-port={manager_port}",
            f"--dashboard-agent-listen-port={self._port()}",
            "--disable-usage-stats",
        ]
        if head:
            command += [
                "--head",
                f"--port={self.port}",
                f"--ray-client-server-port={self.client_port}",
                "--include-dashboard=false",
                f"--temp-dir={self.temp_dir}",
            ]
        else:
            command.append(f"--address={self.address}")
        done = self.exec(command, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"ray start failed:\n{done.stdout}\n{done.stderr}")
        return manager_port

    def kill_node(self, manager_port: int) -> None:
        """kill -9 a node's raylet (its workers go with it)."""
        for pid in self._pids():
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if f"--node_manager_port={manager_port}".encode() in cmdline:
                    os.kill(pid, signal.SIGKILL)

    def _port(self) -> int:
        self._next_port += 1
        return self._next_port

    def _pids(self) -> list[int]:
        """The processes in this namespace."""
        try:
            mine = os.stat(self._netns).st_ino
        except FileNotFoundError:
            return []
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if (
                        os.stat(entry / "ns" / "net").st_ino == mine
                        and int(entry.name) != os.getpid()
                    ):
                        pids.append(int(entry.name))
        return pids

    def destroy(self) -> None:
        """Kill every process in the namespace (nothing else of Ray's), then remove it."""
        for _ in range(50):
            pids = self._pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        if self._netns.exists():
            subprocess.run(["ip", "netns", "del", self.name], check=False)
