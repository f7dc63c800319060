"""The Ray tests' cluster: two nodes in a network namespace of their own (see
tests/ray_cluster.py), started once; each Ray test runs with this process inside it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dagentic import Settings

from tests.ray_cluster import RayCluster

HERE = Path(__file__).parent
_stop: list[Callable[[], None]] = []  # how to stop the cluster, while it runs


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    cluster = RayCluster(f"dgr{os.getpid()}", Path(f"/tmp/dgr{os.getpid()}"))
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    # before Ray is imported: it reads them once
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token)
    import ray
    from ray import cloudpickle

    def stop() -> None:
        _stop.clear()
        with cluster.inside():
            ray.shutdown()
        cluster.destroy()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    _stop.append(stop)
    try:
        cluster.start()
        # Tools written in test modules travel by value (workers cannot import tests/).
        for name, module in list(sys.modules.items()):
            if name == "conftest" or name.startswith(("test_", "tests.")):
                cloudpickle.register_pickle_by_value(module)
        with cluster.inside():
            ray.init(address=cluster.address, namespace="dagentic", log_to_driver=False)
        yield cluster
    finally:
        if _stop:
            stop()


@pytest.hookimpl(trylast=True)  # after the test's own fixtures ended
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """The cluster ends with the last Ray test, not with the session (the rest of the suite
    need not share the machine with its idle workers)."""
    if _stop and (nextitem is None or HERE not in Path(nextitem.path).parents):
        _stop[0]()


@pytest.fixture(autouse=True)
def _inside_the_cluster(ray_cluster: RayCluster) -> Iterator[None]:
    with ray_cluster.inside():
        yield


@pytest.fixture
def ray_settings(ray_cluster: RayCluster, settings: Settings) -> Settings:
    changed = settings.model_copy(deep=True)
    changed.execution.backend = "ray"
    changed.ray.address = ray_cluster.address
    return changed
