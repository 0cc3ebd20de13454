"""A trial that asks for more than the cluster can ever offer fails before training, naming what it
asks and what there is: at once on a cluster that cannot grow, after --resource-wait with an
autoscaler."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cyclegan.config import TrainConfig
from cyclegan.errors import UserError
from orchestrator.config.plan import TaskPlan
from orchestrator.config.resources import Resources
from orchestrator.config.schema import Search
from orchestrator.runtime import has_autoscaler
from orchestrator.sweep.placement import check_cluster_fits, shortfalls

REPO = Path(__file__).resolve().parents[2]


def _plan(name: str = "t", **resources) -> TaskPlan:
    return TaskPlan(
        name=name,
        data="synthetic://colorshift",
        base=TrainConfig(),
        space={},
        resources=Resources(**resources),
        search=Search(),
        trial_count=1,
    )


TWO_CPUS = [{"CPU": 2.0}]
GPU_NODES = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}]
# (resources, nodes, what the message must say; None: it fits)
CASES = [
    ({"workers": 1, "cpus_per_worker": 1}, TWO_CPUS, None),
    ({"workers": 2, "cpus_per_worker": 0.5}, TWO_CPUS, None),
    (
        {"workers": 3, "cpus_per_worker": 1},
        TWO_CPUS,
        "3 worker(s) x (1 CPU, 0 GPU) = 3 CPU, 0 GPU; the cluster has 2 CPU, 0 GPU",
    ),
    (
        {"workers": 2, "cpus_per_worker": 1},
        TWO_CPUS,
        "= 2 CPU",
    ),  # plus the Tune trial's sliver of a CPU
    (
        {"workers": 1, "gpus_per_worker": 1},
        TWO_CPUS,
        "1 worker(s) x (1 CPU, 1 GPU) = 1 CPU, 1 GPU; the cluster has 2 CPU, 0 GPU",
    ),
    ({"workers": 2, "gpus_per_worker": 1}, GPU_NODES, None),
    (
        {"workers": 1, "gpus_per_worker": 2},
        GPU_NODES,
        "the cluster has 16 CPU, 2 GPU in 2 node(s) (largest: 8 CPU, 1 GPU)",
    ),
    (
        {"workers": 1, "cpus_per_worker": 12},
        GPU_NODES,
        "(12 CPU, 0 GPU)",
    ),  # 16 CPUs in all, but no node has 12
]


@pytest.mark.parametrize("resources,nodes,message", CASES)
def test_shortfalls_name_what_a_trial_asks_and_what_the_cluster_has(resources, nodes, message):
    problems = shortfalls([_plan(**resources)], nodes)
    if message is None:
        assert problems == []
    else:
        assert (
            len(problems) == 1
            and problems[0].startswith("task t: a trial asks for")
            and message in problems[0]
        ), problems


def test_on_the_sessions_ray_the_readonly_autoscaler_cannot_grow_and_a_wait_is_bounded(ray_session):
    """The session's Ray has no autoscaler that can launch nodes; asked to wait anyway, the check
    asks the autoscaler, gives up after the wait and names the resources."""
    deadline = time.monotonic() + 30
    while has_autoscaler() and time.monotonic() < deadline:  # the monitor reports every few seconds
        time.sleep(1)
    assert not has_autoscaler()
    too_big = [_plan("big", workers=1, gpus_per_worker=1)]
    with pytest.raises(UserError, match="cannot grow") as caught:
        check_cluster_fits(too_big, can_grow=False)
    assert "task big: a trial asks for 1 worker(s) x (1 CPU, 1 GPU)" in str(caught.value)
    started = time.monotonic()
    with pytest.raises(UserError, match=r"did not add the nodes within 2 s"):
        check_cluster_fits(too_big, can_grow=True, wait_s=2, echo=lambda _: None)
    assert time.monotonic() - started < 20
    check_cluster_fits(
        [_plan("small", workers=1, cpus_per_worker=0.5)], can_grow=False
    )  # fits: no error


MANIFEST = """\
name: too-big
defaults:
  train: {netG: resnet_1blocks, ngf: 8, ndf: 8, load_size: 32, crop_size: 32, n_epochs: 1, n_epochs_decay: 0}
tasks:
  - {name: three-workers, data: "synthetic://colorshift?size=32&n_train=4&n_test=1&seed=0", resources: {workers: 3}}
  - {name: gpus, data: "synthetic://colorshift?size=32&n_train=4&n_test=1&seed=0", resources: {gpus_per_worker: 1}}
"""  # noqa: E501 (test data as the user writes it)


@pytest.mark.slow
def test_run_on_the_private_ray_fails_fast_naming_the_resources(tmp_path):
    """`orchestrator run` with its own private Ray (2 CPUs, no GPU here): exit 2 before any trial,
    the MLflow parent runs ended FAILED, not RUNNING."""
    import shutil
    import tempfile

    import mlflow

    (tmp_path / "m.yaml").write_text(MANIFEST)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ray_tmp = tempfile.mkdtemp(
        prefix="rres-", dir="/tmp"
    )  # short: Ray's socket paths have a length limit
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAY_TMPDIR": ray_tmp,
        "RAY_AUTH_MODE": "disabled",
        "MLFLOW_TRACKING_URI": uri,
        "RAY_ADDRESS": "",
    }
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "run",
                "m.yaml",
                "--storage",
                str(tmp_path / "runs"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr
    assert "the cluster can never run these trials and cannot grow" in err, err
    assert "task three-workers: a trial asks for 3 worker(s) x (1 CPU, 0 GPU) = 3 CPU, 0 GPU" in err
    assert "task gpus: a trial asks for 1 worker(s) x (1 CPU, 1 GPU)" in err
    assert "Traceback" not in err and "sweeping" not in proc.stdout
    assert elapsed < 150, elapsed
    runs = mlflow.MlflowClient(uri).search_runs(
        [mlflow.MlflowClient(uri).get_experiment_by_name("too-big").experiment_id]
    )
    assert runs and {r.info.status for r in runs} == {"FAILED"}
