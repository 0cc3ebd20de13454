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
  # lr 1e-9 cannot learn anything in 3 epochs: ASHA must stop those trials at its first rung
  - name: asha
    data: "synthetic://colorshift?size=32&n_train=10&n_test=2&seed=0"
    search:
      algorithm: grid
      space: {{lr: {{grid: [0.0002, 1.0e-9, 1.0e-9]}}}}
      metric: cycle_l1
      scheduler: {{type: asha, grace_period: 1, reduction_factor: 2}}
      max_concurrent_trials: 1
  - name: random
    data: "synthetic://stripes?size=32&n_train=10&n_test=4&seed=0"
    train: {{eval_metrics: "l1,psnr"}}
    search:
      space: {{lambda_cyc: {{choice: [5, 10]}}}}
      num_samples: 2
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
    assert len(asha) == 3
    by_lr = sorted(asha, key=lambda t: -t["params"]["lr"])
    assert by_lr[0]["status"] == "finished" and by_lr[0]["epochs"] == 3
    assert [t["status"] for t in by_lr[1:]] == ["stopped", "stopped"]  # ASHA cut the hopeless ones early
    assert all(t["epochs"] < 3 for t in by_lr[1:])
    assert tasks["asha"]["best_trial"] == by_lr[0]["trial_id"]

    random_trials = tasks["random"]["trials"]
    assert len(random_trials) == 2 and all(t["status"] == "finished" for t in random_trials)
    best = max(random_trials, key=lambda t: t["metric"])  # psnr: higher is better
    assert tasks["random"]["best_trial"] == best["trial_id"]
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
    stopped = next(t for t in asha if t["status"] == "stopped")
    experiment = client.get_experiment_by_name("two-tasks")
    stopped_run = client.search_runs([experiment.experiment_id], f"tags.trial = '{stopped['trial_id']}'")[0]
    assert stopped_run.info.status == "KILLED"  # stopped early by ASHA: not left RUNNING
    assert "registry: cyclegan-asha v1 (cycle_l1=" in out


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
