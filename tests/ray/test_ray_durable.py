"""A driver killed in the middle of a run on Ray resumes from the durable journal: what
succeeded is not run again, the call that was lost runs again."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.ray_cluster import ROOT, RayCluster

DRIVER = str(Path(__file__).with_name("ray_driver.py"))


def test_a_driver_killed_mid_run_resumes_where_it_stopped(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    runs, work = tmp_path / "runs", tmp_path / "work"
    work.mkdir()
    argv = [sys.executable, DRIVER, str(runs), ray_cluster.address, str(work)]
    env = {**ray_cluster.env}
    env.pop("PYTHONPATH", None)
    log = tmp_path / "driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen(
            ["ip", "netns", "exec", ray_cluster.name, *argv, "run", "crash-me"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while not (work / "pid").exists():
        assert driver.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the long step never started"
        time.sleep(0.05)
    driver.kill()  # SIGKILL: the driver, in the middle of `long`
    driver.wait()
    resumed = subprocess.run(
        ["ip", "netns", "exec", ray_cluster.name, *argv, "resume", "crash-me"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "'long': {'first': False}" in resumed.stdout
    assert (work / "effects").read_text() == "crash-me/first\n"  # first ran once
