"""A hyperparameter has one name in MLflow: a task's parent run, its trials' runs and the registered
version all record `lambda_A`, `lambda_B`, `lambda_identity` (TrainConfig's fields, the reference's
flags), with the same values, whatever the manifest searched them as (`lambda_cyc`, `lambda_idt`).
Through the MLflow client on a sqlite store, with the driver's own steps and no Ray: the runner
opens the task's run, each trial's run gets the options its workers train with, the runner finishes
the task (the registration included)."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow import MlflowClient

import orchestrator.sweep.experiment as runner
from orchestrator.config.plan import load_manifest
from orchestrator.storage.location import parse_storage
from orchestrator.sweep.results import TaskResult, TrialRecord, summary_table
from orchestrator.tracking.mlflow_recorder import MlflowTrialRecorder
from orchestrator.tracking.runs import trial_runs

SEARCHED = {
    "a1": {"lambda_cyc": 5, "lambda_idt": 0.0},
    "b2": {"lambda_cyc": 20, "lambda_idt": 0.3},
}  # b2 scores better
ALIASES = ("lambda_cyc", "lambda_idt")
FIELDS = ("lambda_A", "lambda_B", "lambda_identity")


def _manifest(tmp_path: Path, data: Path) -> Path:
    path = tmp_path / "names.yaml"
    path.write_text(f"""name: names
tracking: {{uri: "sqlite:///{tmp_path}/mlflow.db"}}
defaults:
  train: {{netG: resnet_2blocks, ngf: 8, ndf: 8, load_size: 32, crop_size: 32, n_epochs: 1, n_epochs_decay: 1}}
search:
  metric: psnr
  baseline: false
  num_samples: 2
  space: {{lambda_cyc: {{choice: [5, 20]}}, lambda_idt: {{choice: [0.0, 0.3]}}, lr: 0.0001}}
tasks:
  - {{name: colorshift, data: "{data}"}}
""")  # noqa: E501 (test data as the user writes it)
    return path


def _keys(*mappings) -> set[str]:
    return {key for mapping in mappings for key in mapping}


def test_parent_run_trial_runs_and_registered_version_name_each_hyperparameter_alike(
    tmp_path, tiny_dataset, tiny_trained
):
    loaded = load_manifest(_manifest(tmp_path, tiny_dataset))
    plan = loaded.plans[0]
    spec = runner._start_tracking(loaded, loaded.plans, "token")[plan.name]
    uri, parent_id = spec.uri, spec.parent_run_id
    trained_config = json.loads((tiny_trained / "config.json").read_text())
    trials = []
    for trial_id, sampled in SEARCHED.items():
        cfg = plan.trial_config(sampled, trial_id).replace(dataroot=str(tiny_dataset))
        psnr = 10.0 + sampled["lambda_cyc"]
        with MlflowTrialRecorder(
            spec.for_trial(trial_id), params=cfg.to_record()
        ) as logger:  # as a worker does
            logger.log_epoch(2, {"psnr": psnr})
            logger.log_checkpoint(tiny_trained, "best", epoch=2, config=trained_config)
        trials.append(TrialRecord(trial_id, sampled, "finished", psnr, 2, [], None, best_epoch=2))
    result = TaskResult(plan.name, plan.data, "psnr", "max", trials, best_trial_id="b2")
    runner._finish_task(
        result,
        plan,
        spec,
        loaded.manifest.tracking,
        parse_storage(str(tmp_path / "trials")),
    )

    client = MlflowClient(uri, registry_uri=uri)
    parent = client.get_run(parent_id).data
    runs = {run.data.tags["trial"]: run.data for run in trial_runs(uri, parent_id)}
    version = client.get_model_version("cyclegan-colorshift", "1")
    model = client.get_logged_model(
        version.source.removeprefix("models:/")
    )  # the version's logged model (model_id is unset on sqlite)

    for field in FIELDS:  # the same name and value in every place
        best = runs["b2"].params[field]
        assert (
            parent.tags[f"best.{field}"]
            == version.tags[f"hp.{field}"]
            == model.params[field]
            == best
        ), field
    assert (
        runs["b2"].params["lambda_A"] == runs["b2"].params["lambda_B"] == "20"
        and runs["b2"].params["lambda_identity"] == "0.3"
    )
    assert runs["a1"].params["lambda_A"] == "5"
    assert {k for k in parent.params if k.startswith("space.")} == {
        f"space.{f}.choice" for f in FIELDS
    }
    assert (
        parent.params["space.lambda_A.choice"]
        == parent.params["space.lambda_B.choice"]
        == "[5, 20]"
    )
    assert (
        parent.params["train.lr"] == runs["b2"].params["lr"] == "0.0001"
    )  # a constant: no hp.lr, not searched
    assert (
        version.run_id == client.get_run(version.run_id).info.run_id
        and runs["b2"].tags["trial"] == version.tags["trial"]
    )
    # The manifest's names appear only where they say how they map.
    recorded = _keys(
        parent.params,
        parent.tags,
        version.tags,
        model.params,
        *(r.params for r in runs.values()),
        *(r.tags for r in runs.values()),
    )
    assert not [key for key in recorded if any(alias in key for alias in ALIASES)]
    mapping = "lambda_cyc sets lambda_A and lambda_B; lambda_idt sets lambda_identity"
    assert parent.tags["cyclegan.searched_as"] == version.tags["cyclegan.searched_as"] == mapping
    assert "Hyperparameters: lambda_A=20 lambda_B=20 lambda_identity=0.3." in version.description
    assert "psnr=30" in version.description and "epoch 2" in version.description
    # What the user searched stays in the results and the summary, which say how it maps.
    assert result.best.params == {"lambda_cyc": 20, "lambda_idt": 0.3}
    assert mapping in summary_table([result])
