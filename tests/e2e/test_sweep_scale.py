"""A manifest of many tasks: what the sweep costs beside its training processes stays within the
budget (docs/PERFORMANCE.md), and trials the cluster cannot hold at once queue instead of
failing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import sweep_in_process
from orchestrator.config.plan import load_manifest

REPO = Path(__file__).resolve().parents[2]
TASK_BUDGET_MB = 150  # driver side, per task of the manifest
TRIAL_BUDGET_MB = 400  # driver side, per running trial


@pytest.mark.slow
def test_a_four_task_sweeps_driver_side_memory_stays_within_the_budget_per_task_and_trial(tmp_path):
    """The benchmark's own measurement (scripts/bench_sweep_scale.py): every process of the run
    sampled, PSS of all but the training processes (Ray's node processes, the CLI driver and its
    Tune run, the progress actor, idle workers), at its peak, against 150 MB per task and 400 MB per
    running trial."""
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench_sweep_scale.py"),
            "--tasks",
            "4",
            "--epochs",
            "3",
            "--interval",
            "0.5",
            "--timeout",
            "400",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (report,) = json.loads(out.read_text())
    peak = report["peak_mb"]
    assert report["exit_code"] == 0 and not report["stopped"], report["stdout_tail"]
    assert peak["trials"] == 4, (
        peak
    )  # every task's trial ran at once: the peak below is theirs together
    budget = TASK_BUDGET_MB * 4 + TRIAL_BUDGET_MB * peak["trials"]
    assert peak["driver_side"] <= budget, (
        peak,
        {k: v for k, v in report["kinds"].items() if v["group"] != "worker"},
    )
    # The driver side imports no torch while trials run: only the training processes have it.
    driver_side_torch = {
        k: v["with_torch"]
        for k, v in report["kinds"].items()
        if v["group"] != "worker" and v["with_torch"] and k != "CLI driver"
    }
    assert not driver_side_torch, driver_side_torch


QUEUED = """\
name: queued
max_concurrent_trials: 8
defaults:
  train: {netG: resnet_1blocks, ngf: 8, ndf: 8, load_size: 32, crop_size: 32, num_threads: 0, n_epochs: 1, n_epochs_decay: 0, n_samples: 1}
  resources: {workers: 1, cpus_per_worker: 2}
search:
  num_samples: 2
  space: {lambda_cyc: {choice: [5, 10]}}
  metric: cycle_l1
  baseline: false
  max_failures: 0
tasks:
  - {name: first, data: "synthetic://colorshift?size=32&n_train=8&n_test=2&seed=0"}
  - {name: second, data: "synthetic://stripes?size=32&n_train=8&n_test=2&seed=1"}
"""  # noqa: E501 (test data as the user writes it)


def test_a_manifest_asking_for_more_trials_at_once_than_the_cluster_holds_queues_them_and_completes(
    ray_session, tmp_path, capsys, monkeypatch
):
    """8 trials at once asked, 4 in all; the session's Ray has 4 CPUs and each trial takes 2: two at
    a time run, the others wait for room (none fails for lack of it), and every trial finishes."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (tmp_path / "queued.yaml").write_text(textwrap.dedent(QUEUED))
    loaded = load_manifest(tmp_path / "queued.yaml")
    out, results = sweep_in_process(loaded, tmp_path, capsys)
    assert [task.task for task in results] == ["first", "second"]
    assert all(t.status == "finished" and t.epochs == 1 for task in results for t in task.trials)
    assert [len(task.trials) for task in results] == [2, 2]

    # Each trial's time in MLflow, from its run's creation (as it starts training) to its epoch's
    # metrics: never more than two at once.
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("queued")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if "trial" in r.data.tags]
    assert len(runs) == 4
    spans = [
        (
            r.info.start_time,
            max(m.timestamp for m in client.get_metric_history(r.info.run_id, "time/epoch_wall_s")),
        )
        for r in runs
    ]
    most = max(sum(start <= t < end for start, end in spans) for t, _ in spans)
    assert most <= 2, spans


TWO_WORKERS = """\
name: ddp-sweep
defaults:
  train: {netG: resnet_1blocks, ngf: 8, ndf: 8, load_size: 32, crop_size: 32, num_threads: 0, n_epochs: 1, n_epochs_decay: 0, n_samples: 1}
  resources: {workers: 2, cpus_per_worker: 1, memory_per_worker: 0.25}
search: {metric: cycle_l1, baseline: false, max_failures: 0}
tasks:
  - {name: pair, data: "synthetic://colorshift?size=32&n_train=8&n_test=2&seed=0"}
"""  # noqa: E501 (test data as the user writes it)


def test_a_trial_with_two_workers_is_a_ray_train_ddp_run_inside_the_sweep(
    ray_session, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    (tmp_path / "ddp.yaml").write_text(TWO_WORKERS)
    loaded = load_manifest(tmp_path / "ddp.yaml")
    _, results = sweep_in_process(loaded, tmp_path, capsys)
    (trial,) = results["pair"].trials
    assert trial.status == "finished" and trial.epochs == 1 and trial.best_checkpoint
    # Ray Train's checkpoint of a DDP run: every rank's own state beside rank 0's
    (folder,) = (tmp_path / "runs" / "ddp-sweep" / "trials" / f"pair-{trial.trial_id}").glob(
        "checkpoint_epoch_*"
    )
    assert (folder / "worker_states.pt").is_file() and (folder / "latest_state.pt").is_file()


# ------------------------------------------------------------------------------------------------
# The pieces, without Ray


def _plan(name: str, trials: int = 4, concurrent: int | None = None, **resources):
    from cyclegan.config import TrainConfig
    from orchestrator.config.plan import TaskPlan
    from orchestrator.config.resources import Resources
    from orchestrator.config.schema import Search

    return TaskPlan(
        name=name,
        data="synthetic://colorshift",
        base=TrainConfig(),
        space={},
        resources=Resources(**resources),
        search=Search(max_concurrent_trials=concurrent),
        trial_count=trials,
    )


def test_the_cluster_holds_as_many_trials_as_their_cpus_gpus_and_memory_allow_the_tasks_taking_turns():  # noqa: E501
    from orchestrator.sweep.placement import GIB, concurrency_limit, trials_at_once

    node = {"CPU": 4.0, "memory": 10 * GIB}
    assert trials_at_once([_plan("a", cpus_per_worker=1)], [node]) == 4
    assert (
        trials_at_once([_plan("a", cpus_per_worker=1, memory_per_worker=3)], [node]) == 3
    )  # memory runs out first
    assert (
        trials_at_once(
            [_plan("a", trials=1, cpus_per_worker=1), _plan("b", cpus_per_worker=1)], [node]
        )
        == 4
    )
    assert (
        trials_at_once([_plan("a", concurrent=1, cpus_per_worker=1)], [node]) == 1
    )  # the task's own limit
    assert (
        trials_at_once([_plan("a", cpus_per_worker=8)], [node]) == 1
    )  # never 0: the up-front check says why
    # A multi-worker trial also reserves its Train driver side (a sliver of a CPU and 1.2 GiB)
    # beside its workers.
    assert (
        trials_at_once(
            [_plan("a", workers=2, cpus_per_worker=1)], [{"CPU": 4.5, "memory": 10 * GIB}]
        )
        == 2
    )
    assert (
        concurrency_limit([_plan("a", cpus_per_worker=1)], 7, [node], can_grow=False) == 7
    )  # the manifest's wins
    assert (
        concurrency_limit([_plan("a"), _plan("b", trials=3)], None, [node], can_grow=True) == 7
    )  # every trial


def test_the_tune_run_is_named_after_the_task_selection():
    from orchestrator.sweep.tuner import run_name

    assert run_name([_plan("only")]) == "only"
    assert run_name([_plan("a"), _plan("b")]) == "a+b"
    many = run_name([_plan(f"task-number-{i:03d}") for i in range(50)])
    assert many.startswith("50-tasks-") and len(many) < 30


def test_a_one_worker_trials_checkpoints_rotate_and_an_incomplete_one_is_never_resumed_from(
    tmp_path,
):
    from orchestrator.storage.checkpoints import METRICS_FILE, StoredCheckpoints
    from orchestrator.storage.location import parse_storage

    stored = StoredCheckpoints(parse_storage(str(tmp_path / "runs")), "task-trial", keep=2)
    for epoch in (1, 2, 3):
        staged = tmp_path / f"staged{epoch}"
        staged.mkdir()
        (staged / "latest_state.pt").write_text(str(epoch))
        (staged / METRICS_FILE).write_text("{}")
        stored.save(staged, f"checkpoint_epoch_{epoch:04d}")
    run = tmp_path / "runs" / "task-trial"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint_epoch_0002",
        "checkpoint_epoch_0003",
    ]
    (run / "checkpoint_epoch_0004").mkdir()  # killed while uploading: no metrics.json yet
    (run / "checkpoint_epoch_0004" / "latest_state.pt").write_text("4")
    with stored.newest() as (folder, uri):
        assert folder.name == "checkpoint_epoch_0003" and uri.endswith(
            "task-trial/checkpoint_epoch_0003"
        )


class _Trial:
    def __init__(self, trial_id: str, task: str):
        self.trial_id, self.config = trial_id, {"task": task, "lr": 0.1}


def test_each_tasks_callback_hears_only_of_its_own_trials():
    from ray.tune import Callback

    from orchestrator.sweep.router import TaskCallbacks

    class Recorder(Callback):
        def __init__(self):
            self.events = []

        def on_step_begin(self, iteration, trials, **info):
            self.events.append(("step", [t.trial_id for t in trials]))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.events.append(
                ("result", trial.trial_id, [t.trial_id for t in trials], result["epoch"])
            )

    a, b = Recorder(), Recorder()
    trials = [_Trial("a1", "a"), _Trial("b1", "b"), _Trial("a2", "a")]
    callbacks = TaskCallbacks({"a": a, "b": b})
    callbacks.on_step_begin(0, trials)
    callbacks.on_trial_result(0, trials, trials[1], {"epoch": 1})
    assert a.events == [("step", ["a1", "a2"])]
    assert b.events == [("step", ["b1"]), ("result", "b1", ["b1"], 1)]
