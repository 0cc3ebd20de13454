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

from orchestrator.manifest import load_manifest
from orchestrator.progress import ProgressBoard, ProgressCallback
from orchestrator.runner import run_experiment

REPO = Path(__file__).resolve().parents[1]
TINY = "{netG: resnet_1blocks, ngf: 8, ndf: 8, load_size: 32, crop_size: 32, num_threads: 0, n_epochs: 2, n_epochs_decay: 1}"

ASHA = f"""\
name: asha-sweep
defaults:
  train: {TINY}
  resources: {{workers: 1, cpus_per_worker: 0.5}}
tasks:
  # lr 1e-9 cannot learn anything in 3 epochs: ASHA must stop that trial at its first rung
  - name: asha
    data: "synthetic://colorshift?size=32&n_train=10&n_test=2&seed=0"
    search:
      algorithm: grid
      space: {{lr: {{grid: [0.0002, 1.0e-9]}}}}
      metric: cycle_l1
      scheduler: {{type: asha, grace_period: 1, reduction_factor: 2}}
      max_concurrent_trials: 1
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_asha_stops_the_hopeless_trial_and_the_best_one_is_registered(ray_session, tmp_path, capsys, monkeypatch):
    """In process, on the session's Ray: a grid of two trials under ASHA. (Tasks swept side by side
    and random search: the `ray job submit` test.)"""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    loaded = load_manifest(_write(tmp_path, ASHA))
    code = run_experiment(loaded, loaded.plans, storage=str(tmp_path / "runs"), address=None, resume=False,
                          results_dir=tmp_path / "results")
    out = capsys.readouterr().out
    assert code == 0, out
    results = json.loads((tmp_path / "results" / "asha-sweep.json").read_text())
    (task,) = results["tasks"]

    assert len(task["trials"]) == 2
    learner, hopeless = sorted(task["trials"], key=lambda t: -t["params"]["lr"])
    assert learner["status"] == "finished" and learner["epochs"] == 3
    assert hopeless["status"] == "stopped" and hopeless["epochs"] < 3  # ASHA cut it early
    assert task["best_trial"] == learner["trial_id"]
    assert [h["epoch"] for h in learner["history"]] == [1, 2, 3]
    assert learner["metric"] == learner["history"][-1]["cycle_l1"]
    assert Path(learner["checkpoint"], "latest_net_G_A.pth").is_file()

    assert "asha" in out and "best trial" in out  # the summary table
    assert "progress" in out and "1 finished, 1 stopped" in out

    # MLflow: one child run per trial with each epoch logged once, the champion on the best trial's run
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("cyclegan-asha", "champion")
    assert champion.tags["trial"] == learner["trial_id"]
    run = client.get_run(champion.run_id)
    assert run.data.tags["trial"] == learner["trial_id"] and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(champion.run_id, "loss_G")] == [1, 2, 3]
    experiment = client.get_experiment_by_name("asha-sweep")
    stopped_run = client.search_runs([experiment.experiment_id], f"tags.trial = '{hopeless['trial_id']}'")[0]
    assert stopped_run.info.status == "KILLED"  # stopped early by ASHA: not left RUNNING
    # What the MLflow UI shows: a training experiment, the dataset as the trial's input, its grids by
    # epoch, the code version and the manifest on the task's run.
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert [i.dataset.name for i in run.inputs.dataset_inputs] == ["colorshift"] and run.data.tags["mlflow.loggedImages"] == "True"
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert "mlflow.source.git.commit" in parent.data.tags
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "manifest")] == ["manifest/manifest.yaml"]
    assert "registry: cyclegan-asha v1 (cycle_l1=" in out


def _driver(manifest: Path, cwd: Path, address: str, log: Path, *extra: str) -> subprocess.Popen:
    """`orchestrator run` in a process (and session) of its own, its output in `log`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1",
           "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db"}
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(manifest), "--address", address, *extra],
                                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


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
    """Trials that Tune's saved experiment state (what a resumed sweep starts from) records as finished."""
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
    try:  # kill the driver as soon as Tune has saved the first trial as finished (the second is under way)
        while not (finished := _finished_trials(state_dir)) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert finished, (tmp_path / "first.log").read_text()[-4000:]
    finished_trial = f"only-{finished[0]}"

    # --verbose: the Train workers' output (which trials trained) reaches the driver's log
    second = _driver(manifest, tmp_path, ray_session, tmp_path / "second.log", "--only", "only", "--resume", "--verbose")
    second.wait(timeout=600)
    out = (tmp_path / "second.log").read_text()
    assert second.returncode == 0, out[-4000:]
    assert f"training {finished_trial} " not in out and f"{finished_trial} is already complete" not in out  # not started again
    results = json.loads((tmp_path / "results" / "resumable.json").read_text())
    assert [t["task"] for t in results["tasks"]] == ["only"]  # --only
    trials = results["tasks"][0]["trials"]
    assert len(trials) == 2 and all(t["status"] == "finished" and t["epochs"] == 3 for t in trials)
    assert finished[0] in {t["trial_id"] for t in trials}
    assert "only: 2 finished" in out.rsplit("progress", 1)[1]  # the last progress counts the trial finished before


def test_dry_run_and_only_start_nothing(tmp_path):
    manifest = _write(tmp_path, RESUMABLE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "orchestrator", "run", str(manifest), "--dry-run", "--only", "skipped"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "task skipped: 2 trial(s) of 3 epochs" in run.stdout and "task only" not in run.stdout
    assert "grid point: {'lambda_cyc': 10}" in run.stdout and "nothing started" in run.stdout
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()

    bad = subprocess.run([sys.executable, "-m", "orchestrator", "run", str(manifest), "--only", "nope"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--only: no task named nope" in bad.stderr and "only, skipped" in bad.stderr
    assert "Traceback" not in bad.stderr


class _Trial:
    """What the progress callback reads of a Tune trial."""

    def __init__(self, trial_id: str = "t_00000", status: str = "TERMINATED", epoch: int | None = 3, value: float | None = 0.25):
        self.trial_id, self.status = trial_id, status
        self.last_result = {"epoch": epoch, "cycle_l1": value} if epoch else {}


def test_progress_callback_pickles_the_board_name_not_its_handle(ray_session):
    """Tune pickles callbacks into tuner.pkl; a resumed sweep unpickles them after the board's driver died."""
    board = ProgressBoard.options(name="cyclegan-progress-pickle-test").remote()
    ray.get(board.register.remote("task", "cycle_l1", "min", 2))
    restored = pickle.loads(pickle.dumps(ProgressCallback("cyclegan-progress-pickle-test", "task", "cycle_l1", 3)))
    restored.on_trial_complete(0, [], _Trial())
    deadline = time.monotonic() + 30
    while ray.get(board.snapshot.remote())["task"]["best"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
    state = ray.get(board.snapshot.remote())["task"]
    assert state["trials"] == {"t_00000": "finished"} and state["best"] == 0.25
    assert pickle.loads(pickle.dumps(restored))._board is None  # the cached handle never goes into the pickle

    ray.kill(board)
    gone = pickle.loads(pickle.dumps(ProgressCallback("cyclegan-progress-pickle-test", "task", "cycle_l1", 3)))
    gone.on_trial_start(0, [], _Trial())  # a board that is gone is ignored: progress is only shown


def test_a_resumed_sweeps_progress_counts_the_trials_that_ended_before(ray_session):
    board = ProgressBoard.options(name="cyclegan-progress-restore-test").remote()
    ray.get(board.register.remote("task", "cycle_l1", "min", 4))
    callback = pickle.loads(pickle.dumps(ProgressCallback("cyclegan-progress-restore-test", "task", "cycle_l1", 3)))
    trials = [_Trial("done", "TERMINATED", 3, 0.25), _Trial("cut", "TERMINATED", 1, 0.5),
              _Trial("broken", "ERROR", None), _Trial("next", "PENDING", None)]
    callback.on_step_begin(0, trials)
    callback.on_step_begin(1, [_Trial("late", "TERMINATED", 3, 0.1)])  # only the first step looks back
    callback.on_trial_start(1, [], _Trial())  # the board takes one caller's updates in order: this one comes last
    deadline = time.monotonic() + 30
    while "t_00000" not in ray.get(board.snapshot.remote())["task"]["trials"] and time.monotonic() < deadline:
        time.sleep(0.2)
    state = ray.get(board.snapshot.remote())["task"]
    assert state["trials"] == {"done": "finished", "cut": "stopped", "broken": "failed", "t_00000": "running"}
    assert state["best"] == 0.25
    ray.kill(board)


class _Board:
    """Stands in for the progress actor: its snapshot is whatever the sweep has got to."""

    def __init__(self):
        self.state = {"task": {"metric": "cycle_l1", "mode": "min", "total": 1, "trials": {"t_00000": "running"}, "best": None}}
        self.snapshot = self

    def remote(self):
        return self.state


def test_progress_ends_as_soon_as_the_sweep_does_and_prints_its_last_state(monkeypatch):
    import orchestrator.progress as progress

    monkeypatch.setattr(progress.ray, "get", lambda value: value)
    board, printed, waits = _Board(), [], []

    def wait_done(timeout: float) -> bool:  # the sweep ends during the first wait
        waits.append(timeout)
        board.state = {"task": {**board.state["task"], "trials": {"t_00000": "finished"}, "best": 0.25}}
        return True

    started = time.monotonic()
    progress.follow(board, wait_done, interval=60, echo=printed.append)
    assert time.monotonic() - started < 5 and waits == [60]  # no sleeping out the interval
    assert len(printed) == 2 and "1 running" in printed[0] and "1 finished" in printed[1] and "0.25" in printed[1]
