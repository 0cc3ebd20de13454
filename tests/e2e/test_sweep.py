"""Ray Tune sweeps end to end on a real local Ray: ASHA, the best trial, the results file, the
registry, --resume after the driver is killed, --only and --dry-run, and the progress board."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import ray

from conftest import tune_failures
from orchestrator.config.plan import load_manifest
from orchestrator.sweep.experiment import run_experiment
from orchestrator.sweep.options import RunOptions
from orchestrator.sweep.progress import ProgressBoard, ProgressCallback

REPO = Path(__file__).resolve().parents[2]
TINY = (
    "{netG: resnet_1blocks, ngf: 8, ndf: 8, load_size: 32, crop_size: 32, num_threads: 0, "
    "n_epochs: 2, n_epochs_decay: 1}"
)

ASHA = f"""\
name: asha-sweep
defaults:
  train: {TINY}
  resources: {{workers: 1, cpus_per_worker: 0.5}}
tasks:
  # lr 1e-9 cannot learn anything: ASHA must stop that trial at its first rung (epoch 2). ASHA's last
  # rung (max_t: 3) comes before the trials' fourth epoch: the winner is a trial the scheduler stopped.
  - name: asha
    data: "synthetic://colorshift?size=32&n_train=10&n_test=2&seed=0"
    train: {{n_epochs: 3}}
    search:
      algorithm: grid
      space: {{lr: {{grid: [0.0002, 1.0e-9]}}}}
      metric: cycle_l1
      scheduler: {{type: asha, grace_period: 2, reduction_factor: 2, max_t: 3}}
      max_concurrent_trials: 1
"""  # noqa: E501 (test data as the user writes it)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_asha_stops_trials_and_a_stopped_trials_best_epoch_registers_from_s3_storage(
    ray_session, s3_env, tmp_path, capsys, monkeypatch
):
    """In process, on the session's Ray, checkpoints on moto S3: a grid of two trials under ASHA,
    both stopped by it. The best trial's best epoch is kept in S3 and registered from there, byte
    for byte. (Tasks swept side by side and random search: the `ray job submit` test.)"""
    import boto3
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    from orchestrator.sweep.results import load_results

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="sweep-runs")
    loaded = load_manifest(_write(tmp_path, ASHA))
    code = run_experiment(
        loaded,
        loaded.plans,
        RunOptions(storage=f"s3://sweep-runs/{tmp_path.name}", results_dir=tmp_path / "results"),
    )
    out = capsys.readouterr().out
    assert code == 0, out
    task = load_results(tmp_path / "results" / "asha-sweep.json")["asha"]

    assert (
        len(task.trials) == 2
    )  # the paper's lr (2e-4) is a point of the grid: no extra baseline trial
    learner, hopeless = sorted(task.trials, key=lambda t: -t.params["lr"])
    assert (
        hopeless.status == "stopped"
        and hopeless.epochs == 2
        and hopeless.note == "stopped early by the scheduler after 2 epoch(s)"
    )
    assert learner.status == "stopped" and learner.epochs == 3  # ASHA's max_t
    assert learner.baseline and task.baseline_trial_id == learner.trial_id and not hopeless.baseline
    assert task.best_trial_id == learner.trial_id and task.improvement == 0
    # the trial's result is its best epoch (ties: the later one), not its last
    values = [h["cycle_l1"] for h in learner.history]
    best_so_far = [
        max(e for e in range(1, n + 1) if values[e - 1] == min(values[:n])) for n in (1, 2, 3)
    ]
    assert [h["epoch"] for h in learner.history] == [1, 2, 3] and [
        h["best_epoch"] for h in learner.history
    ] == best_so_far
    if learner.best_epoch <= learner.epochs:
        assert learner.metric == min(values) and learner.best_epoch == best_so_far[-1]
    else:
        # the workers finished an epoch more before the stop reached them, and it was better still
        assert learner.best_epoch > learner.epochs and learner.metric < min(values)

    # that epoch's generators in S3, beside the rotated checkpoints
    prefix = f"{tmp_path.name}/asha-sweep/trials/asha-{learner.trial_id}/best"
    best = json.loads(s3.get_object(Bucket="sweep-runs", Key=f"{prefix}/best.json")["Body"].read())
    assert (best["epoch"], best["value"], best["metric"]) == (
        learner.best_epoch,
        learner.metric,
        "cycle_l1",
    )
    assert learner.best_checkpoint == f"s3://sweep-runs/{prefix}"
    kept = s3.get_object(Bucket="sweep-runs", Key=f"{prefix}/{best['folder']}/latest_net_G_A.pth")[
        "Body"
    ].read()

    assert (
        "asha" in out and "best trial" in out and "the baseline is best" in out
    )  # the summary table
    assert "progress" in out and "2 stopped" in out

    # MLflow: one child run per trial with each epoch logged once, the champion on the best trial's
    # run
    client = MlflowClient(uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("cyclegan-asha", "champion")
    assert champion.tags["trial"] == learner.trial_id and champion.tags["epoch"] == str(
        learner.best_epoch
    )
    assert (
        champion.tags["metric"],
        float(champion.tags["metric_value"]),
        champion.tags["baseline"],
    ) == ("cycle_l1", learner.metric, "true")
    model_dir = Path(
        download_artifacts(
            f"models:/cyclegan-asha/{champion.version}", dst_path=str(tmp_path / "model")
        )
    )
    (registered,) = model_dir.rglob("latest_net_G_A.pth")
    assert registered.read_bytes() == kept  # the best epoch's generator, from S3
    run = client.get_run(champion.run_id)
    assert (
        run.data.tags["trial"] == learner.trial_id and run.info.status == "KILLED"
    )  # stopped by the scheduler
    assert (
        run.data.tags["cyclegan.best_epoch"] == str(learner.best_epoch)
        and run.data.tags["cyclegan.baseline"] == "true"
    )
    # each epoch logged once: ASHA's 3, and the one more that the workers may have finished (and
    # kept, but not always logged) before the stop reached them
    steps = sorted(m.step for m in client.get_metric_history(champion.run_id, "loss_G"))
    assert steps in ([1, 2, 3], [1, 2, 3, 4])
    experiment = client.get_experiment_by_name("asha-sweep")
    stopped_run = client.search_runs(
        [experiment.experiment_id], f"tags.trial = '{hopeless.trial_id}'"
    )[0]
    assert (
        stopped_run.info.status == "KILLED"
        and stopped_run.data.tags["cyclegan.status"] == "stopped"
    )  # not left RUNNING
    # What the MLflow UI shows: a training experiment, the dataset as the trial's input, its grids
    # by epoch, the code version and the manifest on the task's run, what the sweep found.
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["colorshift"] and run.data.tags[
        "mlflow.loggedImages"
    ] == "True"
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert "mlflow.source.git.commit" in parent.data.tags
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "manifest")] == [
        "manifest/manifest.yaml"
    ]
    assert (
        parent.data.metrics["best/cycle_l1"] == learner.metric
        and parent.data.metrics["best/epoch"] == learner.best_epoch
    )  # the task's summaries, named apart from its trials' `best_cycle_l1` series
    assert (
        parent.data.tags["cyclegan.best_trial"]
        == parent.data.tags["cyclegan.baseline_trial"]
        == learner.trial_id
    )
    assert "registry: cyclegan-asha v1 (cycle_l1=" in out
    page = f"#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
    assert page in out  # the link to the runs, not MLflow 3's GenAI overview


TPE = """\
name: tpe-sweep
defaults:
  train: {netG: resnet_1blocks, ngf: 8, ndf: 8, load_size: 32, crop_size: 32, num_threads: 0, n_epochs: 1, n_epochs_decay: 1,
          eval_metrics: "l1,psnr"}
  resources: {workers: 1, cpus_per_worker: 0.5}
search:
  # TPE models the results from the first finished trial on (the baseline): the next ones are its suggestions
  algorithm: {type: optuna, n_startup_trials: 1}
  space: {lambda_cyc: {uniform: [5.0, 15.0]}}
  num_samples: 2
  metric: psnr
  max_concurrent_trials: 1
  seed: 0
tasks:
  - {name: tpe, data: "synthetic://colorshift?size=32&n_train=10&n_test=2&seed=0"}
"""  # noqa: E501 (test data as the user writes it)


def test_tpe_starts_from_the_papers_baseline_and_learns_from_each_trials_best_epoch(
    ray_session, tmp_path, capsys, monkeypatch
):
    import optuna

    from orchestrator.sweep.results import load_results

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    loaded = load_manifest(_write(tmp_path, TPE))
    assert loaded.plans[0].trial_count == 3  # 2 samples + the baseline
    code = run_experiment(
        loaded,
        loaded.plans,
        RunOptions(storage=str(tmp_path / "runs"), results_dir=tmp_path / "results"),
    )
    out = capsys.readouterr().out
    assert code == 0, out
    task = load_results(tmp_path / "results" / "tpe-sweep.json")["tpe"]
    assert [t.status for t in task.trials] == ["finished"] * 3 and all(
        t.error is None for t in task.trials
    )
    baseline, *suggested = task.trials  # in the order Tune created them
    assert (
        baseline.baseline
        and baseline.params == {"lambda_cyc": 10.0}
        and task.baseline_trial_id == baseline.trial_id
    )
    assert not any(t.baseline for t in suggested) and all(
        5.0 <= t.params["lambda_cyc"] <= 15.0 for t in suggested
    )
    assert "the baseline)" in out and "vs baseline" in out

    # The searcher's saved state: Optuna's study, with its TPE sampler, the baseline enqueued first
    # and the other trials asked of the sampler, each told its trial's best value.
    (state_file,) = (tmp_path / "runs" / "tpe-sweep" / "tune" / "tpe").glob("searcher-state-*.pkl")
    with open(state_file, "rb") as f:
        state = pickle.load(f)
    study = state["_ot_study"]
    assert (
        isinstance(study.sampler, optuna.samplers.TPESampler)
        and study.sampler._n_startup_trials == 1
    )
    assert (
        state["_metric"] == "best_psnr" and study.direction == optuna.study.StudyDirection.MAXIMIZE
    )
    first, *asked = sorted(study.trials, key=lambda t: t.number)
    assert first.system_attrs.get("fixed_params") == {"lambda_cyc": 10.0} and first.params == {
        "lambda_cyc": 10.0
    }
    assert [t.system_attrs.get("fixed_params") for t in asked] == [None, None]
    by_trial = {trial_id: t for trial_id, t in state["_ot_trials"].items()}
    for record in task.trials:
        told = next(t for t in study.trials if t.number == by_trial[record.trial_id].number)
        assert told.params["lambda_cyc"] == record.params["lambda_cyc"]
        assert told.value == record.metric  # the best epoch's value, what the trial is ranked by


GUARDED = f"""\
name: guarded
defaults:
  train: {TINY}
  resources: {{workers: 1, cpus_per_worker: 0.5}}
search:
  metric: cycle_l1
  max_concurrent_trials: 1
tasks:
  # lr 1e30 blows the weights up at the first step: non-finite losses. lr 1e-9 learns nothing: its cycle
  # error stays more than 1.1x the baseline's (lr 2e-4, the paper's, run first).
  - name: diverging
    data: "synthetic://colorshift?size=32&n_train=10&n_test=2&seed=0"
    search: {{algorithm: grid, space: {{lr: {{grid: [0.0002, 1.0e+30, 1.0e-9]}}}}, divergence_factor: 1.1}}
  # 3 s from the sweep's start: long before a trial's 100 epochs end
  - name: budget
    data: "synthetic://colorshift?size=32&n_train=10&n_test=2&seed=0"
    train: {{n_epochs: 100, n_epochs_decay: 0}}
    search: {{time_budget_s: 3, num_samples: 2, space: {{lambda_cyc: {{choice: [5, 20]}}}}}}
  - name: failing
    data: {{missing}}
    search: {{max_failed_trials: 1, max_failures: 0, num_samples: 2, space: {{lambda_cyc: {{choice: [5, 20]}}}}}}
"""  # noqa: E501 (test data as the user writes it)


def test_guard_rails_stop_diverged_trials_unretried_and_sweeps_over_budget_or_failing(
    ray_session, tmp_path, capsys, monkeypatch
):
    from mlflow import MlflowClient

    from orchestrator.sweep.results import load_results

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    loaded = load_manifest(
        _write(tmp_path, GUARDED.replace("{missing}", str(tmp_path / "no-such-dataset")))
    )
    started = time.monotonic()
    code = run_experiment(
        loaded,
        loaded.plans,
        RunOptions(storage=str(tmp_path / "runs"), results_dir=tmp_path / "results"),
    )
    out = capsys.readouterr().out
    assert code == 1, out  # two tasks have no successful trial
    results = load_results(tmp_path / "results" / "guarded.json")

    diverging = results["diverging"]
    baseline, exploded, hopeless = sorted(
        diverging.trials, key=lambda t: (t.params["lr"] != 0.0002, -t.params["lr"])
    )
    assert (
        baseline.baseline
        and baseline.status == "finished"
        and diverging.best_trial_id == baseline.trial_id
    )
    assert (
        exploded.status == "diverged"
        and exploded.note.startswith("diverged at epoch 1: loss_")
        and "is nan" in exploded.note
    )
    assert (
        hopeless.status == "diverged"
        and "x above the baseline's" in hopeless.note
        and hopeless.epochs < 3
    )
    assert (
        f"diverging: trial {exploded.trial_id} diverged at epoch 1" in out
        and "1 finished, 2 diverged" in out
    )
    # stopped as diverged, not errors: Tune retried neither (max_failures is 2 here)
    assert tune_failures(tmp_path / "runs", "guarded", "diverging") == {
        t.trial_id: 0 for t in diverging.trials
    }
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("guarded")
    run = client.search_runs([experiment.experiment_id], f"tags.trial = '{exploded.trial_id}'")[0]
    assert run.info.status == "FAILED" and run.data.tags["cyclegan.status"] == "diverged"
    assert run.data.tags["cyclegan.note"] == exploded.note

    budget = results["budget"]
    assert budget.stopped == "the task's time budget of 3 s ran out"
    # the trials Tune had created were stopped (an epoch or two in, or before their first), the
    # others never will be
    assert {t.status for t in budget.trials} == {"stopped"} and 1 <= len(budget.trials) <= 3
    assert all(t.epochs < 100 for t in budget.trials) and (
        budget.best is None or budget.best.best_epoch < 100
    )
    assert all(t.note.endswith("the task's time budget of 3 s ran out") for t in budget.trials)
    assert budget.trials[0].baseline and budget.trials[0].params == {"lambda_cyc": 10.0}
    assert (
        "budget: trial" in out
        and "stopped, stopped early: the task's time budget of 3 s ran out" in out
    )

    failing = results["failing"]
    assert failing.stopped == "1 trial(s) failed (search.max_failed_trials: 1)"
    assert [t.status for t in failing.trials].count("failed") == 1  # no other trial ran
    assert all(
        t.note == "stopped before its first epoch: 1 trial(s) failed (search.max_failed_trials: 1)"
        for t in failing.trials
        if t.status != "failed"
    )
    assert "no-such-dataset" in failing.first_error()
    assert time.monotonic() - started < 400


def _driver(manifest: Path, cwd: Path, address: str, log: Path, *extra: str) -> subprocess.Popen:
    """`orchestrator run` in a process (and session) of its own, its output in `log`."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAY_AUTH_MODE": "disabled",
        "PYTHONUNBUFFERED": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db",
    }
    with open(log, "w") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "run",
                str(manifest),
                "--address",
                address,
                *extra,
            ],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


RESUMABLE = f"""\
name: resumable
defaults:
  train: {TINY}
  resources: {{workers: 1, cpus_per_worker: 0.5}}
search:
  algorithm: grid
  space: {{lambda_cyc: {{grid: [10, 5]}}}}
  metric: cycle_l1
  max_concurrent_trials: 1
tasks:
  - {{name: only, data: "synthetic://colorshift?size=32&n_train=10&n_test=2&seed=0"}}
  - {{name: skipped, data: "synthetic://stripes?size=32&n_train=10&n_test=2&seed=0"}}
"""


def _finished_trials(state_dir: Path) -> list[str]:
    """Trials that Tune's saved experiment state (what a resumed sweep starts from) records as
    finished."""
    finished = []
    for path in state_dir.glob("experiment_state-*.json"):
        try:
            trials = [json.loads(data) for data, _ in json.loads(path.read_text())["trial_data"]]
        except (OSError, ValueError, KeyError):  # being written
            continue
        finished += [t["trial_id"] for t in trials if t.get("status") == "TERMINATED"]
    return finished


def test_resume_after_the_driver_is_killed_does_not_redo_finished_trials(ray_session, tmp_path):
    manifest = _write(tmp_path, RESUMABLE)
    first = _driver(manifest, tmp_path, ray_session, tmp_path / "first.log", "--only", "only")
    state_dir = tmp_path / "runs" / "resumable" / "tune" / "only"
    deadline = time.monotonic() + 300
    try:
        # kill the driver as soon as Tune has saved the first trial as finished (the second is under
        # way)
        while (
            not (finished := _finished_trials(state_dir))
            and first.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert finished, (tmp_path / "first.log").read_text()[-4000:]
    finished_trial = f"only-{finished[0]}"

    # --verbose: the Train workers' output (which trials trained) reaches the driver's log
    second = _driver(
        manifest,
        tmp_path,
        ray_session,
        tmp_path / "second.log",
        "--only",
        "only",
        "--resume",
        "--verbose",
    )
    second.wait(timeout=600)
    out = (tmp_path / "second.log").read_text()
    assert second.returncode == 0, out[-4000:]
    assert (
        f"training {finished_trial} " not in out
        and f"{finished_trial} is already complete" not in out
    )  # not started again
    results = json.loads((tmp_path / "results" / "resumable.json").read_text())
    assert [t["task"] for t in results["tasks"]] == ["only"]  # --only
    trials = results["tasks"][0]["trials"]
    assert len(trials) == 2 and all(t["status"] == "finished" and t["epochs"] == 3 for t in trials)
    assert finished[0] in {t["trial_id"] for t in trials}
    assert (
        "only: 2 finished" in out.rsplit("progress", 1)[1]
    )  # the last progress counts the trial finished before


def test_dry_run_and_only_start_nothing(tmp_path):
    manifest = _write(tmp_path, RESUMABLE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            str(manifest),
            "--dry-run",
            "--only",
            "skipped",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "task skipped: 2 trial(s) of 3 epochs" in run.stdout and "task only" not in run.stdout
    assert "grid point: {'lambda_cyc': 10}" in run.stdout and "nothing started" in run.stdout
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()

    bad = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", str(manifest), "--only", "nope"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        bad.returncode == 2
        and "--only: no task named nope" in bad.stderr
        and "only, skipped" in bad.stderr
    )
    assert "Traceback" not in bad.stderr


class _Trial:
    """What the progress callback reads of a Tune trial."""

    def __init__(
        self,
        trial_id: str = "t_00000",
        status: str = "TERMINATED",
        epoch: int | None = 3,
        value: float | None = 0.25,
    ):
        self.trial_id, self.status, self.config = trial_id, status, {}
        self.last_result = (
            {"epoch": epoch, "cycle_l1": value, "best_cycle_l1": value, "best_epoch": epoch}
            if epoch
            else {}
        )


def test_progress_callback_pickles_the_board_name_not_its_handle(ray_session):
    """Tune pickles callbacks into tuner.pkl; a resumed sweep unpickles them after the board's
    driver died."""
    board = ProgressBoard.options(name="cyclegan-progress-pickle-test").remote()
    ray.get(board.register.remote("task", "cycle_l1", "min", 2))
    restored = pickle.loads(
        pickle.dumps(ProgressCallback("cyclegan-progress-pickle-test", "task", "cycle_l1", 3))
    )
    restored.on_trial_complete(0, [], _Trial())
    deadline = time.monotonic() + 30
    while ray.get(board.snapshot.remote())["task"]["best"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    state = ray.get(board.snapshot.remote())["task"]
    assert state["trials"] == {"t_00000": "finished"} and state["best"] == 0.25
    assert (
        pickle.loads(pickle.dumps(restored))._board is None
    )  # the cached handle never goes into the pickle

    ray.kill(board)
    gone = pickle.loads(
        pickle.dumps(ProgressCallback("cyclegan-progress-pickle-test", "task", "cycle_l1", 3))
    )
    gone.on_trial_start(0, [], _Trial())  # a board that is gone is ignored: progress is only shown


def test_a_resumed_sweeps_progress_counts_the_trials_that_ended_before(ray_session):
    board = ProgressBoard.options(name="cyclegan-progress-restore-test").remote()
    ray.get(board.register.remote("task", "cycle_l1", "min", 4))
    callback = pickle.loads(
        pickle.dumps(ProgressCallback("cyclegan-progress-restore-test", "task", "cycle_l1", 3))
    )
    trials = [
        _Trial("done", "TERMINATED", 3, 0.25),
        _Trial("cut", "TERMINATED", 1, 0.5),
        _Trial("broken", "ERROR", None),
        _Trial("next", "PENDING", None),
    ]
    callback.on_step_begin(0, trials)
    callback.on_step_begin(
        1, [_Trial("late", "TERMINATED", 3, 0.1)]
    )  # only the first step looks back
    callback.on_trial_start(
        1, [], _Trial()
    )  # the board takes one caller's updates in order: this one comes last
    deadline = time.monotonic() + 30
    while (
        "t_00000" not in ray.get(board.snapshot.remote())["task"]["trials"]
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    state = ray.get(board.snapshot.remote())["task"]
    assert state["trials"] == {
        "done": "finished",
        "cut": "stopped",
        "broken": "failed",
        "t_00000": "running",
    }
    assert state["best"] == 0.25
    ray.kill(board)


class _Board:
    """Stands in for the progress actor: its snapshot is whatever the sweep has got to."""

    def __init__(self):
        self.state = {
            "task": {
                "metric": "cycle_l1",
                "mode": "min",
                "total": 1,
                "trials": {"t_00000": "running"},
                "best": None,
            }
        }
        self.snapshot = self

    def remote(self):
        return self.state


def test_progress_ends_as_soon_as_the_sweep_does_and_prints_its_last_state(monkeypatch):
    import orchestrator.sweep.progress as progress

    monkeypatch.setattr(progress.ray, "get", lambda value: value)
    board, printed, waits = _Board(), [], []

    def wait_done(timeout: float) -> bool:  # the sweep ends during the first wait
        waits.append(timeout)
        board.state = {
            "task": {**board.state["task"], "trials": {"t_00000": "finished"}, "best": 0.25}
        }
        return True

    started = time.monotonic()
    progress.follow(board, wait_done, interval=60, echo=printed.append)
    assert time.monotonic() - started < 5 and waits == [60]  # no sleeping out the interval
    assert (
        len(printed) == 2
        and "1 running" in printed[0]
        and "1 finished" in printed[1]
        and "0.25" in printed[1]
    )
