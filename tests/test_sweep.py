"""Ray Tune sweeps end to end on a real local Ray: two tasks, ASHA, the best trial per task,
the results file, --resume after the driver is killed, --only and --dry-run."""

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
from orchestrator.sweep import TrialRecord, pick_best

REPO = Path(__file__).resolve().parents[1]
TINY = "{netG: resnet_1blocks, ngf: 8, ndf: 8, load_size: 32, crop_size: 32, num_threads: 0, n_epochs: 2, n_epochs_decay: 1}"

TWO_TASKS = f"""\
name: two-tasks
defaults:
  train: {TINY}
  resources: {{workers: 1, cpus_per_worker: 0.5}}
search:
  num_samples: 1
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
  - name: random
    data: "synthetic://stripes?size=32&n_train=10&n_test=4&seed=0"
    train: {{eval_metrics: "l1,psnr"}}
    search:
      space: {{lambda_cyc: {{choice: [5, 10]}}}}
      metric: psnr
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_two_task_sweep_asha_and_best_trials(ray_session, tmp_path, capsys, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    loaded = load_manifest(_write(tmp_path, TWO_TASKS))
    code = run_experiment(loaded, loaded.plans, storage=str(tmp_path / "runs"), address=None, resume=False,
                          results_dir=tmp_path / "results")
    out = capsys.readouterr().out
    assert code == 0, out
    results = json.loads((tmp_path / "results" / "two-tasks.json").read_text())
    tasks = {t["task"]: t for t in results["tasks"]}

    asha = tasks["asha"]["trials"]
    assert len(asha) == 2
    learner, hopeless = sorted(asha, key=lambda t: -t["params"]["lr"])
    assert learner["status"] == "finished" and learner["epochs"] == 3
    assert hopeless["status"] == "stopped" and hopeless["epochs"] < 3  # ASHA cut it early
    assert tasks["asha"]["best_trial"] == learner["trial_id"]

    random_trials = tasks["random"]["trials"]
    assert len(random_trials) == 1 and random_trials[0]["status"] == "finished"
    assert tasks["random"]["best_trial"] == random_trials[0]["trial_id"]
    for trial in random_trials:
        assert [h["epoch"] for h in trial["history"]] == [1, 2, 3]
        assert trial["metric"] == trial["history"][-1]["psnr"]
        assert Path(trial["checkpoint"], "latest_net_G_A.pth").is_file()
    assert {t["params"]["lambda_cyc"] for t in random_trials} <= {5, 10}

    assert "asha" in out and "random" in out and "best trial" in out  # the summary table
    assert "progress" in out

    # MLflow: one child run per trial with each epoch logged once, the champion on the best trial's run
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    for task in ("asha", "random"):
        best_id = tasks[task]["best_trial"]
        champion = client.get_model_version_by_alias(f"cyclegan-{task}", "champion")
        assert champion.tags["trial"] == best_id
        run = client.get_run(champion.run_id)
        assert run.data.tags["trial"] == best_id and run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(champion.run_id, "loss_G")]
        assert steps == [1, 2, 3]
    experiment = client.get_experiment_by_name("two-tasks")
    stopped_run = client.search_runs([experiment.experiment_id], f"tags.trial = '{hopeless['trial_id']}'")[0]
    assert stopped_run.info.status == "KILLED"  # stopped early by ASHA: not left RUNNING
    assert "registry: cyclegan-asha v1 (cycle_l1=" in out


def _trial(trial_id: str, metric: float | None, status: str = "finished") -> TrialRecord:
    return TrialRecord(trial_id=trial_id, params={}, status=status, metric=metric, epochs=3, history=[], checkpoint=None)


def test_best_trial_follows_the_mode_and_skips_failed_and_unscored_trials():
    trials = [_trial("low", 18.0), _trial("high", 24.0), _trial("failed", 99.0, "failed"), _trial("nan", float("nan")),
              _trial("none", None), _trial("stopped", 20.0, "stopped")]
    assert pick_best(trials, "max").trial_id == "high"      # psnr: higher is better
    assert pick_best(trials, "min").trial_id == "low"       # cycle_l1: lower is better
    assert pick_best([_trial("failed", 1.0, "failed"), _trial("nan", float("nan"))], "min") is None


def _driver(manifest: Path, cwd: Path, address: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1",
           "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db"}
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(manifest), "--address", address, *extra],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


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


def test_resume_after_the_driver_is_killed_does_not_redo_finished_trials(ray_session, tmp_path):
    manifest = _write(tmp_path, RESUMABLE)
    first = _driver(manifest, tmp_path, ray_session, "--only", "only")
    seen = []
    deadline = time.monotonic() + 300
    try:
        for line in first.stdout:  # wait until the first trial has finished, then kill the driver
            seen.append(line)
            if "1 finished" in line or time.monotonic() > deadline:
                break
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert any("1 finished" in line for line in seen), "".join(seen[-40:])
    finished_trial = next(line.split("training ")[1].split(" ")[0] for line in seen if "training only-" in line)

    second = _driver(manifest, tmp_path, ray_session, "--only", "only", "--resume")
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out[-4000:]
    assert f"training {finished_trial} " not in out  # the finished trial was not trained again
    results = json.loads((tmp_path / "results" / "resumable.json").read_text())
    assert [t["task"] for t in results["tasks"]] == ["only"]  # --only
    trials = results["tasks"][0]["trials"]
    assert len(trials) == 2 and all(t["status"] == "finished" and t["epochs"] == 3 for t in trials)


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
    trial_id = "t_00000"
    last_result = {"epoch": 3, "cycle_l1": 0.25}


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
