"""What a daily MLflow user sees of a task's record (issue 30), against a real `mlflow server`: read
through its REST API, and its runs page through headless Chromium.

One task's record is made once for the module, the way a sweep makes it: a parent run, two trials
recorded by the trial processes' listener (orchestrator.trial.session) from a tiny trained run (the
baseline's `lambda_A` a float, the sampled one's an int), the task's outcome, the best trial
registered, the parent ended.
"""

from __future__ import annotations

import getpass
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from cyclegan.config import TrainConfig
from orchestrator.storage.best import BEST_CHECKPOINT, BEST_EPOCH
from orchestrator.tracking.registry import Candidate, register_best
from orchestrator.tracking.runs import (
    TaskRunSpec,
    end_task_run,
    log_trials_table,
    open_task_runs,
    record_task_outcome,
    set_trial_status,
)
from orchestrator.tracking.server import runs_page
from orchestrator.trial.session import _tracking_listener

DATASET = "s3://datasets/zebra"
RAY_SESSION_DIR = "/tmp/ray/session_2026-01-01/artifacts/zebra"  # gone once the sweep ends


@pytest.fixture(scope="module")
def record(mlflow_server, tiny_trained, tiny_dataset, tmp_path_factory) -> dict:
    uri = mlflow_server
    manifest = tmp_path_factory.mktemp("ui") / "ui.yaml"
    manifest.write_text("name: ui\n")
    spec = TaskRunSpec(
        "zebra",
        dataset=DATASET,
        manifest_name="ui",
        manifest_sha256="0" * 64,
        metric="psnr",
        mode="max",
        params={
            "search": {"num_samples": 2, "mode": None, "seed": None},
            "space": {"lambda_A": {"choice": [5, 10]}},
        },
    )
    context = open_task_runs(uri, "mlflow-ui", [spec], manifest)["zebra"]
    config = json.loads((tiny_trained / "config.json").read_text())
    epochs = [json.loads(x) for x in (tiny_trained / "metrics.jsonl").read_text().splitlines()]
    trials = {}
    for i, lambda_a in enumerate((10.0, 10)):  # the baseline's value, the same value sampled
        name = f"trial_{i}"
        cfg = TrainConfig.from_dict(
            {
                **config,
                "dataroot": DATASET,
                "lambda_A": lambda_a,
                "checkpoints_dir": RAY_SESSION_DIR,
                "name": f"zebra-{name}",
            }
        )
        listener = _tracking_listener(
            context.for_trial(name), cfg, name, tiny_trained, tiny_dataset
        )
        for metrics in epochs:
            epoch = metrics["epoch"]
            listener(
                epoch,
                {
                    **metrics,
                    "psnr": metrics["psnr"] + i,
                    "epoch_wall_s": 1.5,
                    "world_size": 1,
                    "batch_size_total": 1,
                    "resumed_from_epoch": 0,
                    BEST_EPOCH: epoch,
                    "best_psnr": metrics["psnr"] + i,
                    BEST_CHECKPOINT: f"s3://runs/ui/trials/zebra-{name}/best",
                },
            )
        trials[name] = set_trial_status(uri, context.parent_run_id, name, "FINISHED")
    best = epochs[-1]["psnr"] + 1
    record_task_outcome(
        uri,
        context.parent_run_id,
        {"best_psnr": best, "best_epoch": epochs[-1]["epoch"], "baseline_psnr": best - 1},
        {"cyclegan.best_trial": "trial_1"},
    )
    log_trials_table(
        uri,
        context.parent_run_id,
        [
            {"trial": "trial_0", "baseline": True, "lambda_A": 10.0, "psnr": best - 1},
            {"trial": "trial_1", "baseline": False, "lambda_A": 10, "psnr": best},
        ],
    )
    registration = register_best(
        uri,
        Candidate(
            "zebra",
            trials["trial_1"],
            "psnr",
            best,
            "max",
            step=epochs[-1]["epoch"],
            hyperparameters={"lambda_A": 10.0},
            dataset=DATASET,
        ),
        prefix="ui-",
    )
    end_task_run(uri, context.parent_run_id, summary=registration.summary())
    return {"uri": uri, "context": context, "trials": trials, "epochs": epochs}


def api(record: dict, endpoint: str, body: dict | None = None, **params) -> dict:
    """One call of the server's REST API (GET with `params`, POST with `body`)."""
    url = f"{record['uri']}/api/2.0/mlflow/{endpoint}"
    response = (
        requests.post(url, json=body, timeout=30)
        if body is not None
        else requests.get(url, params=params, timeout=30)
    )
    assert response.ok, f"{endpoint}: {response.status_code} {response.text[:300]}"
    return response.json()


def rest_run(record: dict, run_id: str) -> dict:
    run = api(record, "runs/get", run_id=run_id)["run"]
    run["params"] = {p["key"]: p["value"] for p in run["data"].get("params", [])}
    run["tags"] = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    run["metrics"] = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
    return run


def test_the_printed_link_opens_the_runs_page_with_the_tasks_runs(record, tmp_path):
    """Point 1: the URL `run` prints lands on the experiment's runs (not MLflow 3's GenAI overview)
    in a fresh headless Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    url = runs_page(record["uri"], record["context"].experiment_id)
    assert url.endswith("runs?workflowType=machine_learning")
    assert runs_page("sqlite:///x.db", "7").startswith("mlflow ui --backend-store-uri")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000"]
    flags.append(f"--user-data-dir={tmp_path / 'profile'}")  # a fresh browser: no stored choice
    shot = tmp_path / "runs.png"
    subprocess.run(
        [chromium, *flags, "--window-size=1400,900", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
    )
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    assert shot.stat().st_size > 10_000
    text = " ".join(re.sub(r"<[^>]+>", " ", dom).split())
    # The task's run, its two trials nested under it (collapsed), and its dataset.
    assert "Run Name" in text and "3 matching runs" in text, text[-1500:]
    assert "zebra (" in text and "Model registry" in text
    assert "Overview" not in text and "Traces 0" not in text  # the GenAI landing page


def test_sample_grids_start_at_step_0_above_few_params(record):
    """Point 2: the image series has the untrained generators' grid at step 0; the run has few
    params, so the image card is not buried under them."""
    run_id = record["trials"]["trial_0"]
    images = api(record, "artifacts/list", run_id=run_id, path="images")["files"]
    steps = {
        int(f["path"].split("+step+")[1].split("+")[0])
        for f in images
        if f["path"].endswith(".png") and "compressed" not in f["path"]
    }
    assert steps == {0} | {m["epoch"] for m in record["epochs"]}
    assert len(rest_run(record, run_id)["params"]) <= 25


def test_one_value_has_one_string(record):
    """Point 3: `lambda_A` 10.0 (baseline) and 10 (sampled) are one string: one filter finds
    both."""
    found = api(
        record,
        "runs/search",
        {
            "experiment_ids": [record["context"].experiment_id],
            "filter": "params.lambda_A = '10' AND tags.`cyclegan.role` = 'trial'",
        },
    )["runs"]
    assert {r["info"]["run_id"] for r in found} == set(record["trials"].values())


def test_every_run_carries_code_version_source_and_user(record):
    """Point 4: trials and the task's run have the commit, source name and type, and the user."""
    user = getpass.getuser()
    for run_id in [record["context"].parent_run_id, *record["trials"].values()]:
        run = rest_run(record, run_id)
        tags = run["tags"]
        assert len(tags.get("mlflow.source.git.commit", "")) == 40, run_id
        assert tags["mlflow.source.name"] == "python -m orchestrator run ui"
        assert tags["mlflow.source.type"] == "LOCAL"
        assert tags["mlflow.user"] == user == run["info"]["user_id"]


def test_no_dead_paths_or_empty_params_and_the_whole_config_as_a_file(record, tmp_path):
    """Point 5: no Ray-session paths, no `None` or empty values; config.json holds everything."""
    for run_id in [record["context"].parent_run_id, *record["trials"].values()]:
        params = rest_run(record, run_id)["params"]
        assert not [k for k, v in params.items() if v in ("None", "") or RAY_SESSION_DIR in v]
        assert "search.mode" not in params and "checkpoints_dir" not in params
    run_id = record["trials"]["trial_1"]
    params = rest_run(record, run_id)["params"]
    assert params["lambda_A"] == "10" and params["n_epochs"] == "1" and "lr" not in params
    path = MlflowClient(record["uri"]).download_artifacts(run_id, "config.json", str(tmp_path))
    full = json.loads(Path(path).read_text())
    assert full["lr"] == 0.0002 and full["checkpoints_dir"] == RAY_SESSION_DIR


def test_constants_once_timings_in_namespaces_and_task_summaries_apart(record):
    """Point 6: world size and batch as params, the resume point a tag, timings under time/ and
    throughput/, the task's summaries under best/ (not the trials' `best_psnr` series name)."""
    run = rest_run(record, record["trials"]["trial_0"])
    metrics = run["metrics"]
    assert not {"world_size", "batch_size_total", "resumed_from_epoch"} & set(metrics)
    assert run["params"]["world_size"] == "1" and run["params"]["batch_size_total"] == "1"
    assert run["tags"]["cyclegan.resumed_from_epoch"] == "0"
    assert {"time/epoch_time_s", "time/epoch_wall_s", "throughput/pairs_per_s"} <= set(metrics)
    assert not {"epoch_time_s", "pairs_per_s", "data_wait_fraction"} & set(metrics)
    assert "psnr" in metrics and "loss_G" in metrics and "best_psnr" in metrics
    parent = rest_run(record, record["context"].parent_run_id)["metrics"]
    assert {"best/psnr", "best/epoch", "baseline/psnr"} <= set(parent)
    assert not {"best_psnr", "best_epoch"} & set(parent)


def test_datasets_show_their_source_and_profile_on_trials_and_the_task_run(record, tiny_dataset):
    """Point 7: a source type the UI displays (s3, with its URI), a schema and a profile; on the
    task's run too."""
    for run_id in [record["context"].parent_run_id, *record["trials"].values()]:
        (used,) = rest_run(record, run_id)["inputs"]["dataset_inputs"]
        dataset = used["dataset"]
        assert dataset["source_type"] == "s3" and json.loads(dataset["source"]) == {"uri": DATASET}
        profile = json.loads(dataset["profile"])
        assert profile["trainA_images"] == len(list((tiny_dataset / "trainA").glob("*.png")))
        assert profile["image_size"] and profile["size_mb"] > 0
        assert "image" in dataset["schema"]


def test_every_trials_best_generators_are_in_its_run(record):
    """Point 8: not only the champion's: each trial's best epoch's generators are artifacts of its
    run, tagged with where storage keeps them."""
    for name, run_id in record["trials"].items():
        files = api(record, "artifacts/list", run_id=run_id, path="checkpoints/best")["files"]
        assert {Path(f["path"]).name for f in files} == {
            "latest_net_G_A.pth",
            "latest_net_G_B.pth",
            "config.json",
        }
        tags = rest_run(record, run_id)["tags"]
        assert tags["cyclegan.best_checkpoint"] == f"s3://runs/ui/trials/zebra-{name}/best"
        assert tags["cyclegan.checkpoint.best.epoch"] == str(record["epochs"][-1]["epoch"])


def test_the_logged_model_has_metrics_and_the_registered_model_a_description(record):
    """Point 9: the Models tab can rank the generators (metrics linked to the logged model, with
    the dataset), and the registered model says what it is."""
    found = api(
        record,
        "logged-models/search",
        {"experiment_ids": [record["context"].experiment_id]},
    )["models"]
    (model,) = found
    metrics = {m["key"]: m for m in model["data"]["metrics"]}
    assert metrics["psnr"]["value"] == pytest.approx(record["epochs"][-1]["psnr"] + 1)
    assert metrics["psnr"]["dataset_name"] == "zebra" and metrics["psnr"]["model_id"]
    registered = api(record, "registered-models/get", name="ui-zebra")["registered_model"]
    assert "task zebra" in registered["description"] and "champion" in registered["description"]


def test_the_task_run_holds_its_trials_as_one_sortable_table(record, tmp_path):
    """Beyond the ten: the sweep's summary as an MLflow table on the task's run (the UI shows a
    run's `mlflow.loggedArtifacts` tables as sortable tables)."""
    parent = record["context"].parent_run_id
    logged = json.loads(rest_run(record, parent)["tags"]["mlflow.loggedArtifacts"])
    assert {"path": "trials.json", "type": "table"} in logged
    path = MlflowClient(record["uri"]).download_artifacts(parent, "trials.json", str(tmp_path))
    table = json.loads(Path(path).read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert [(r["trial"], r["baseline"], r["lambda_A"]) for r in rows] == [
        ("trial_0", "True", 10),
        ("trial_1", "False", 10),
    ]
    assert all(isinstance(r["psnr"], float) for r in rows)
