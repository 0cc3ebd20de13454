"""MLflow tracking of sweeps, against a real `mlflow server` (S3 artifacts on moto) and the local
sqlite default."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from conftest import free_port
from cyclegan.commands.runner import run_cli
from cyclegan.errors import UserError
from orchestrator.commands import main as orchestrator_main
from orchestrator.redact import mask_text, safe_params
from orchestrator.tracking.context import TrackingContext
from orchestrator.tracking.lineage import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    content_digest,
    git_commit,
    log_task_lineage,
)
from orchestrator.tracking.mlflow_recorder import MlflowTrialRecorder
from orchestrator.tracking.recorder import SAMPLES_FOLDER
from orchestrator.tracking.registry import Candidate, champion_version, register_best
from orchestrator.tracking.runs import (
    TaskRunSpec,
    end_task_run,
    get_or_create_experiment,
    open_training_experiment,
    start_task_run,
    trial_runs,
)
from orchestrator.tracking.server import check_tracking, resolve_tracking_uri

SECRET = "hunter2-s3cr3t"
DATASET = f"https://alice:{SECRET}@data.example.org/colorshift"


@pytest.fixture(params=["server", "sqlite"])
def tracking_uri(request, tmp_path, monkeypatch) -> str:
    """The MLflow server, or the default store: sqlite:///<cwd>/mlflow.db with artifacts beside
    it."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv(
        "AWS_SECRET_ACCESS_KEY", "AWSSECRETVALUE1234"
    )  # must never reach params or tags
    if request.param == "server":
        return request.getfixturevalue("mlflow_server")
    monkeypatch.chdir(tmp_path)
    return resolve_tracking_uri(None)


def _epochs(trained: Path) -> list[dict]:
    return [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]


def _sweep(uri: str, trained: Path, experiment: str, tasks: tuple[str, ...]) -> dict:
    """What the Tune sweep does per task, without Ray: parent run, trials logged epoch by epoch
    (trial_1 scores better), the best one registered, the parent ended with the summary."""
    exp = get_or_create_experiment(uri, experiment)
    config = json.loads((trained / "config.json").read_text())
    out = {}
    for task in tasks:
        parent = start_task_run(
            uri,
            exp,
            TaskRunSpec(
                task,
                dataset=DATASET,
                manifest_name="quickstart",
                manifest_sha256="ab" * 32,
                metric="psnr",
                mode="max",
                params={
                    "search": {"num_samples": 2},
                    "space": {"lr": {"loguniform": [1e-4, 1e-3]}},
                },
            ),
        )
        runs, best = {}, {}
        for i in range(2):
            trial = f"trial_{i}"
            params = {
                **config,
                "lr": 1e-4 * (i + 1),
                "storage": {"aws_secret_access_key": SECRET, "uri": DATASET},
                "note": "key AWSSECRETVALUE1234",
            }
            with MlflowTrialRecorder(
                TrackingContext(uri, exp, parent, trial=trial), params=params
            ) as logger:
                trial_best = {}
                for metrics in _epochs(trained):
                    metrics = {**metrics, "psnr": metrics["psnr"] + i}
                    assert logger.log_epoch(metrics["epoch"], metrics)
                    logger.log_sample_grid(metrics["epoch"], metrics["sample_grid"])
                    if metrics["psnr"] > trial_best.get("value", -1):
                        trial_best = {
                            "value": metrics["psnr"],
                            "run": logger.run_id,
                            "epoch": metrics["epoch"],
                            "lr": params["lr"],
                        }
                # The sweep uploads `best` on each improvement; once is enough here.
                logger.log_checkpoint(trained, "best", epoch=trial_best["epoch"], config=config)
                logger.log_checkpoint(trained, "final", epoch=metrics["epoch"], config=config)
            if trial_best["value"] > best.get("value", -1):
                best = trial_best
            runs[trial] = logger.run_id
        registration = register_best(
            uri,
            Candidate(
                task,
                best["run"],
                metric="psnr",
                value=best["value"],
                mode="max",
                step=best["epoch"],
                hyperparameters={"lr": best["lr"]},
                dataset=DATASET,
            ),
        )
        end_task_run(uri, parent, summary=registration.summary())
        out[task] = {"parent": parent, "runs": runs, "best": best, "registration": registration}
    return out


def test_two_task_sweep_lands_runs_metrics_artifacts_and_champions(tracking_uri, tiny_trained):
    uri = tracking_uri
    result = _sweep(uri, tiny_trained, "sweep-test", ("alpha", "beta"))
    client = MlflowClient(uri, registry_uri=uri)
    epochs = [m["epoch"] for m in _epochs(tiny_trained)]
    for task, info in result.items():
        parent = client.get_run(info["parent"])
        assert parent.info.status == "FINISHED"
        assert {
            k: parent.data.tags[k] for k in ("task", "manifest", "manifest_sha256", "metric")
        } == {
            "task": task,
            "manifest": "quickstart",
            "manifest_sha256": "ab" * 32,
            "metric": "psnr",
        }
        assert parent.data.tags["dataset"] == "https://alice:***@data.example.org/colorshift"
        assert "champion" in parent.data.tags["mlflow.note.content"]
        children = trial_runs(uri, info["parent"])
        assert sorted(r.data.tags["trial"] for r in children) == ["trial_0", "trial_1"]
        for run in children:
            assert run.info.status == "FINISHED"
            params = run.data.params
            assert params["netG"] == "resnet_2blocks" and float(params["lr"]) in (1e-4, 2e-4)
            assert params["storage.aws_secret_access_key"] == "***"
            everything = json.dumps([params, run.data.tags])
            assert SECRET not in everything and "AWSSECRETVALUE1234" not in everything
            for key in ("loss_G", "throughput/pairs_per_s", "psnr"):
                assert [
                    m.step for m in client.get_metric_history(run.info.run_id, key)
                ] == epochs, key
            artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
            assert artifacts == {f"samples/epoch_{e:03d}.png" for e in epochs}
            final = {
                Path(a.path).name
                for a in client.list_artifacts(run.info.run_id, "checkpoints/final")
            }
            assert {
                "latest_net_G_A.pth",
                "latest_net_G_B.pth",
                "latest_net_D_A.pth",
                "config.json",
            } <= final
        champion = champion_version(client, f"cyclegan-{task}")
        assert champion.tags["run_id"] == info["best"]["run"] == info["runs"]["trial_1"]
        assert champion.tags["dataset"] == "https://alice:***@data.example.org/colorshift"
        assert (
            info["registration"].champion
            and info["registration"].reason == "promoted: first champion"
        )
    # One experiment for the manifest; the sqlite default keeps artifacts beside the database.
    assert client.get_experiment_by_name("sweep-test") is not None
    if uri.startswith("sqlite:"):
        assert Path("mlflow.db").is_file() and any(Path("mlartifacts").rglob("latest_net_G_A.pth"))


def test_resumed_trial_continues_its_run_with_increasing_steps(mlflow_server):
    uri = mlflow_server
    exp = get_or_create_experiment(uri, "resume-test")
    parent = start_task_run(
        uri,
        exp,
        TaskRunSpec(
            "resume", dataset="synthetic://colorshift", manifest_name="m", manifest_sha256="0"
        ),
    )
    with (
        pytest.raises(RuntimeError),
        MlflowTrialRecorder(
            TrackingContext(uri, exp, parent, trial="trial_7"), params={"lr": 0.001}
        ) as first,
    ):
        for epoch in (1, 2, 3):
            first.log_epoch(epoch, {"loss_G": 1.0 / epoch})
        raise RuntimeError("worker died")  # the retry resumes from the epoch-2 checkpoint
    client = MlflowClient(uri)
    assert client.get_run(first.run_id).info.status == "FAILED"

    second = MlflowTrialRecorder(
        TrackingContext(uri, exp, parent, trial="trial_7"), params={"lr": 0.001}
    )
    assert second.run_id == first.run_id and second.resumed and second.last_step == 3
    assert client.get_run(second.run_id).info.status == "RUNNING"
    assert [
        second.log_epoch(e, {"loss_G": 0.5, "epoch": e, "psnr": np.float32(20)}) for e in (3, 4, 5)
    ] == [False, True, True]
    second.finish()
    steps = [m.step for m in client.get_metric_history(second.run_id, "loss_G")]
    assert steps == [1, 2, 3, 4, 5]
    assert [m.step for m in client.get_metric_history(second.run_id, "psnr")] == [4, 5]
    assert len(trial_runs(uri, parent)) == 1
    assert client.get_run(second.run_id).info.status == "FINISHED"


def test_stopped_driver_leaves_no_running_trials(mlflow_server):
    uri = mlflow_server
    exp = get_or_create_experiment(uri, "stop-test")
    stopped = TaskRunSpec(
        "stopped",
        dataset="synthetic://colorshift",
        manifest_name="m",
        manifest_sha256="0",
        sweep_key="run-1",
    )
    parent = start_task_run(uri, exp, stopped)
    loggers = [
        MlflowTrialRecorder(TrackingContext(uri, exp, parent, trial=f"trial_{i}")) for i in range(2)
    ]  # workers killed: never finished
    loggers[0].finish("FINISHED")
    ended = end_task_run(uri, parent, status="KILLED")
    client = MlflowClient(uri)
    assert ended == [loggers[1].run_id]
    assert client.get_run(loggers[1].run_id).info.status == "KILLED"
    assert client.get_run(loggers[0].run_id).info.status == "FINISHED"
    assert client.get_run(parent).info.status == "KILLED"
    # The same driver relaunched (same sweep key) continues the same parent run.
    again = start_task_run(uri, exp, stopped)
    assert again == parent and client.get_run(parent).info.status == "RUNNING"


def test_unreachable_tracking_server_is_named_within_seconds(capsys):
    uri = f"http://bob:{SECRET}@127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        check_tracking(uri)
    assert time.monotonic() - start < 10
    assert "http://bob:***@127.0.0.1:" in str(err.value) and "not reachable" in str(err.value)
    assert SECRET not in str(err.value)
    assert run_cli(orchestrator_main, ["models", "list", "--tracking-uri", uri]) == 2
    printed = capsys.readouterr().err
    assert (
        printed.startswith("error: MLflow tracking server http://bob:***@")
        and "Traceback" not in printed
    )


def test_default_tracking_uri_order(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert resolve_tracking_uri(None, tmp_path) == "http://127.0.0.1:5001"
    assert resolve_tracking_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    # Relative to the driver's folder, not to each Ray worker's.
    assert (
        resolve_tracking_uri("sqlite:///runs/x.db", tmp_path)
        == f"sqlite:///{tmp_path.resolve()}/runs/x.db"
    )
    check_tracking(f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises(UserError, match="does not exist"):
        check_tracking(f"sqlite:///{tmp_path}/missing/mlflow.db")


def test_secrets_are_masked(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "envpassword99")
    params = safe_params(
        {
            "data": {"uri": "s3://AKIAIOSFODNN7EXAMPLE@bucket/x", "password": "p"},
            "tracking": "https://u:pw@host/path?token=abc&x=1",
            "log": "login with envpassword99",
            "options": ["aws_secret_access_key=wJalrXUtnFEMI"],
            "lr": 0.0002,
        }
    )
    assert params == {
        "data.uri": "s3://***@bucket/x",
        "data.password": "***",
        "tracking": "https://u:***@host/path?token=***&x=1",
        "log": "login with ***",
        "options": '["aws_secret_access_key=***"]',
        "lr": "0.0002",
    }
    assert mask_text("plain text, epoch 3") == "plain text, epoch 3"


def test_runs_carry_what_mlflow_users_look_for(tmp_path, tiny_trained, tiny_dataset, monkeypatch):
    """Through the MLflow client, on a sqlite store: a model-training experiment, the sample grids
    as an image series by epoch, the dataset as an input (masked reference, content digest), the
    code version and the masked manifest on the parent run, system metrics on request."""
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = open_training_experiment(uri, "lineage")
    assert (
        client.get_experiment(exp).tags[EXPERIMENT_KIND_TAG]
        == MODEL_TRAINING_KIND
        == "custom_model_development"
    )
    assert open_training_experiment(uri, "lineage") == exp  # reopening keeps it (and its kind)

    parent = start_task_run(
        uri, exp, TaskRunSpec("t", dataset=DATASET, manifest_name="m", manifest_sha256="0")
    )
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        f"name: m\nstorage: s3://bucket/runs\ntasks:\n  - {{name: t, data: '{DATASET}'}}\n"
    )
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True
    ).stdout.strip()
    assert git_commit() == commit and len(commit) == 40
    assert git_commit(tmp_path) is None  # not a checkout: no tag rather than a wrong one
    log_task_lineage(uri, parent, manifest)
    assert client.get_run(parent).data.tags["mlflow.source.git.commit"] == commit
    logged = Path(
        client.download_artifacts(parent, "manifest/m.yaml", str(tmp_path / "dl"))
    ).read_text()
    assert (
        "data: 'https://alice:***@data.example.org/colorshift'" in logged and SECRET not in logged
    )

    with MlflowTrialRecorder(
        TrackingContext(uri, exp, parent, system_metrics=True, trial="trial_0")
    ) as logger:
        logger.log_dataset(DATASET, tiny_dataset)
        for metrics in _epochs(tiny_trained):
            logger.log_epoch(metrics["epoch"], metrics)
            logger.log_sample_grid(metrics["epoch"], metrics["sample_grid"])
        deadline = time.monotonic() + 20
        while (
            "system/cpu_utilization_percentage" not in client.get_run(logger.run_id).data.metrics
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
    run = client.get_run(logger.run_id)
    assert (
        "system/cpu_utilization_percentage" in run.data.metrics
        and "system/system_memory_usage_megabytes" in run.data.metrics
    )

    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == "colorshift" and dataset.source_type == "http"
    assert json.loads(dataset.source) == {"url": "https://alice:***@data.example.org/colorshift"}
    assert dataset.digest == content_digest(tiny_dataset) and len(dataset.digest) == 16
    assert {t.key: t.value for t in dataset_input.tags} == {"mlflow.data.context": "train"}
    changed = shutil.copytree(tiny_dataset, tmp_path / "changed")
    (changed / "trainA" / "extra.png").write_bytes(b"x")
    assert content_digest(changed) != dataset.digest

    epochs = [m["epoch"] for m in _epochs(tiny_trained)]
    images = [a.path for a in client.list_artifacts(logger.run_id, "images")]
    steps = sorted(
        int(p.split("+step+")[1].split("+")[0])
        for p in images
        if p.endswith(".png") and "compressed" not in p
    )
    assert steps == epochs and all(
        Path(p).name.startswith(f"{SAMPLES_FOLDER}+step+") for p in images
    )
    assert run.data.tags["mlflow.loggedImages"] == "True"
    assert {a.path for a in client.list_artifacts(logger.run_id, "samples")} == {
        f"samples/epoch_{e:03d}.png" for e in epochs
    }


def test_code_version_is_only_recorded_for_code_tracked_in_a_checkout(tmp_path):
    def git(*args):
        subprocess.run(
            ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    (tmp_path / ".gitignore").write_text(".venv\n")
    git("add", ".gitignore")
    git("commit", "-qm", "first")
    (tmp_path / ".venv" / "site-packages").mkdir(parents=True)
    assert git_commit(tmp_path) is not None
    assert (
        git_commit(tmp_path / ".venv" / "site-packages") is None
    )  # installed into an ignored folder: not this checkout's code


def test_trials_logging_one_dataset_at_once_all_get_it(tmp_path):
    """Trials of a task start together and log the same dataset: MLflow's store inserts it once
    per process that found none, and all but one insert break its uniqueness (the demo's trial
    that failed once under load). Every run ends with the dataset as its input."""
    from mlflow.exceptions import MlflowException

    from orchestrator.tracking.lineage import log_dataset_input

    uri = f"sqlite:///{tmp_path}/race.db"
    client = MlflowClient(uri)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"x")
    for round_ in range(3):  # the race is lost only sometimes: three rounds of eight at once
        experiment = client.create_experiment(f"race-{round_}")
        runs = [client.create_run(experiment).info.run_id for _ in range(8)]
        barrier, errors = threading.Barrier(len(runs)), []

        def log(run_id: str, barrier=barrier, errors=errors) -> None:
            barrier.wait()
            try:
                log_dataset_input(MlflowClient(uri), run_id, "synthetic://photo?seed=0", folder)
            except MlflowException as err:
                errors.append(str(err)[:200])

        threads = [threading.Thread(target=log, args=(run_id,)) for run_id in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert [len(client.get_run(r).inputs.dataset_inputs) for r in runs] == [1] * len(runs)
