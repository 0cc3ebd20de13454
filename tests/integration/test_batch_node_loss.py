"""A worker node lost in the middle of a batch translation: a Ray cluster of three nodes on this
machine (Ray's own multi-node test cluster, `ray.cluster_utils.Cluster`: a head that runs nothing
and two one-CPU workers), the translating actor's node removed while it translates.
Ray Data starts the actor again on the other node and does the lost blocks again: every output is
there, each counted once.

The driver runs in a process of its own (this module run as a script): it owns that cluster, which
the session's Ray in the pytest process must not meet.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

IMAGES = 900

pytestmark = pytest.mark.slow


def test_a_lost_worker_node_loses_no_output_and_duplicates_none(tmp_path):
    from conftest import register_random_champion  # here: this module also runs as the driver

    uri, _ = register_random_champion(tmp_path, "tiny")
    rng = np.random.default_rng(0)
    for i in range(IMAGES):
        folder = tmp_path / "in" / f"part{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (48, 48 + i % 5, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    done = subprocess.run(
        [sys.executable, __file__, str(tmp_path), uri],
        capture_output=True,
        text=True,
        timeout=420,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["removed"] and result["running_at_removal"], f"removed too late: {result}"
    assert result["written_before_removal"] < IMAGES, result
    counts = result["report"]["counts"]
    assert result["report"]["complete"] and counts["translated"] == IMAGES, result
    written = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")}
    expected = {p.relative_to(tmp_path / "in").as_posix() for p in (tmp_path / "in").rglob("*")}
    assert {k for k in written if not k.startswith("_translation")} == expected
    assert not [k for k in written if k.endswith(".part")]  # no partial file left


def _outputs(root: Path) -> int:
    return sum(1 for _ in (root / "out").rglob("*.png"))


def _translator_node(address: str) -> str | None:
    from ray.util.state import list_actors

    actors = list_actors(address=address, filters=[("state", "=", "ALIVE")], detail=True)
    return next((a.node_id for a in actors if "Translator" in (a.class_name or "")), None)


def _driver(root: Path, uri: str) -> None:
    """Start the cluster, translate in a thread, remove the translating actor's node a second after
    it started; print the outcome as one JSON line."""
    import ray
    from ray.cluster_utils import Cluster

    from orchestrator.batch.job import JobOptions, translate

    with socket.socket() as probe:  # another Ray on this machine may hold the default port
        probe.bind(("127.0.0.1", 0))
        dashboard_port = probe.getsockname()[1]
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": True, "dashboard_port": dashboard_port},
    )
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    options = JobOptions(
        model="models:/cyclegan-tiny/1",
        input=str(root / "in"),
        output=str(root / "out"),
        batch_size=4,
        tracking_uri=uri,
    )
    result: dict = {"removed": False, "running_at_removal": False, "written_before_removal": 0}
    job = threading.Thread(target=lambda: result.update(report=translate(options, lambda _: None)))
    job.start()
    deadline = time.monotonic() + 240
    victim = None
    while job.is_alive() and victim is None and time.monotonic() < deadline:
        node_id = _translator_node(cluster.gcs_address)
        victim = next((n for n in nodes if n.node_id == node_id), None)
        time.sleep(0.1)
    if victim is not None:
        time.sleep(1.0)  # the actor has loaded the generator and is translating
        result["running_at_removal"] = job.is_alive()
        result["written_before_removal"] = _outputs(root)
        cluster.remove_node(victim, allow_graceful=False)
        result["removed"] = True
    job.join(300)
    ray.shutdown()
    cluster.shutdown()
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    _driver(Path(sys.argv[1]), sys.argv[2])
