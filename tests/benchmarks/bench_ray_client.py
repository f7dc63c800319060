"""Ray Client connections: how often the first ``ray://`` connections to a fresh cluster
fail, with gRPC's fork handlers on (Ray's default) and off on the cluster's nodes.

Run (as root: each cluster lives in a network namespace, as in the tests, see
tests/ray_cluster.py):

    .venv/bin/python tests/benchmarks/bench_ray_client.py [--clusters 12] [--clients 2]
        [--modes default,no-fork-support] [--json FILE]

Per mode, ``--clusters`` fresh two-node clusters are started one after another, and
``--clients`` new driver processes connect to each through Ray Client
(``ray.init("ray://127.0.0.1:10001")``, plain Ray: no retry of dagentic's) and run one
task. The head's Ray Client server starts a server process per client; with gRPC's fork
handlers on, that process can die as it starts (ray-project/ray#63202). The modes
alternate cluster by cluster, so load from other work falls on both alike. Reported per
mode: the failed connections as (cluster, client) pairs, and how many were first
connections to a cluster.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.*

from stats import make_parser, python_version, write_results

from tests.ray_cluster import RayCluster

MODES = {
    "default": {"GRPC_ENABLE_FORK_SUPPORT": None},
    "no-fork-support": {"GRPC_ENABLE_FORK_SUPPORT": "false"},
}
CLIENT = (
    "import ray; ray.init('ray://127.0.0.1:10001', namespace='bench', log_to_driver=False); "
    "print(ray.get(ray.remote(lambda: 1).options(num_cpus=0.1).remote())); ray.shutdown()"
)


def one_cluster(mode: str, clients: int) -> list[bool]:
    """Start a fresh cluster with ``mode``'s environment; whether each client connected."""
    cluster = RayCluster(f"dgb{os.getpid()}", Path(f"/tmp/dgb{os.getpid()}"))
    for name, value in MODES[mode].items():
        if value is None:
            cluster.env.pop(name, None)
        else:
            cluster.env[name] = value
    cluster.start()
    try:
        done = [cluster.exec([sys.executable, "-c", CLIENT], timeout=300) for _ in range(clients)]
        return [d.returncode == 0 and d.stdout.strip().endswith("1") for d in done]
    finally:
        cluster.destroy()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = make_parser(__doc__)
    parser.add_argument("--clusters", type=int, default=12, help="Fresh clusters per mode.")
    parser.add_argument("--clients", type=int, default=2, help="Connections per cluster.")
    parser.add_argument("--modes", default=",".join(MODES), help="Comma-separated modes.")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    failed: dict[str, list[tuple[int, int]]] = {m: [] for m in modes}
    started = time.monotonic()
    for k in range(args.clusters):
        for mode in modes:
            for i, ok in enumerate(one_cluster(mode, args.clients)):
                if not ok:
                    failed[mode].append((k, i))
    results: dict[str, Any] = {
        "python": python_version(),
        "config": {"clusters": args.clusters, "clients": args.clients},
        "seconds": round(time.monotonic() - started),
    }
    for mode in modes:
        results[mode] = {
            "connections": args.clusters * args.clients,
            "failed": len(failed[mode]),
            "failed_first": sum(1 for _, i in failed[mode] if i == 0),
            "failures": failed[mode],
        }
        print(
            f"{mode:<16} {len(failed[mode])}/{args.clusters * args.clients} connections "
            f"failed ({results[mode]['failed_first']}/{args.clusters} first connections)"
        )
    write_results(results, args.json_file)
    return results


if __name__ == "__main__":
    main()
