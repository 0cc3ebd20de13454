"""MLflow tracking for sweeps: one experiment per manifest, a parent run per task, a child run per
trial.

Everything here talks to MLflow through an explicit `MlflowClient(uri)`, never the fluent
API's global state, so it works the same in the driver and in a Ray Train rank-0 worker.
What crosses into a worker is plain data (orchestrator.tracking.context); a trial records
into its own run through orchestrator.tracking.recorder.
"""

from __future__ import annotations

import getpass
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import (
    MLFLOW_GIT_COMMIT,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
    MLFLOW_USER,
)

from cyclegan.errors import UserError
from orchestrator.redact import MAX_TAG_VALUE, mask_text, mask_value, safe_params
from orchestrator.tracking.client import all_pages
from orchestrator.tracking.context import TrackingContext
from orchestrator.tracking.lineage import git_commit, log_task_lineage, mark_training_experiment
from orchestrator.tracking.naming import (
    canonical_number,
    canonical_params,
    param_string,
    task_metric_name,
)
from orchestrator.tracking.server import check_tracking, default_artifact_location

log = logging.getLogger(__name__)

TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")
ROLE_TAG = "cyclegan.role"  # "task" on parent runs, "trial" on child runs
LAST_EPOCH_TAG = "cyclegan.last_epoch"
# on a trial's run: finished, stopped, diverged or failed (orchestrator.sweep.results)
STATUS_TAG = "cyclegan.status"
BASELINE_TAG = "cyclegan.baseline"  # on a trial's run: "true" for the task's baseline trial
NOTE_TAG = "cyclegan.note"  # on a trial's run: how it ended when it did not finish
# Hyperparameters carry their TrainConfig names everywhere (orchestrator.config.aliases): a trial
# run's params, `space.<name>.<distribution>` params and `best.<name>` tags on its task's run,
# `hp.<name>` registry tags.
BEST_PREFIX = "best."  # on a task's run: the best trial's hyperparameters, one tag each
# on a task's run and a registered version: which manifest alias set which fields
SEARCHED_AS_TAG = "cyclegan.searched_as"
# What a trial's run copies from its task's run: what it belongs to, and where it came from
# (MLflow's source and user columns).
PROVENANCE_TAGS = (MLFLOW_USER, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_GIT_COMMIT)
INHERITED_TAGS = ("task", "dataset", "manifest", "metric", "mode", *PROVENANCE_TAGS)


# ------------------------------------------------------------------------------------------------
# Experiment and task (parent) runs


def _quoted(value: str) -> str:
    if "'" in value or "\\" in value:
        raise ValueError(
            f"{value!r}: names used in MLflow searches cannot contain quotes or backslashes"
        )
    return f"'{value}'"


def masked_tags(values: Mapping[str, Any]) -> dict[str, str]:
    """Tag values as MLflow stores them: masked, cut to its limit; None values left out."""
    return {
        key: mask_value(key, value)[:MAX_TAG_VALUE]
        for key, value in values.items()
        if value is not None
    }


def get_or_create_experiment(uri: str, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment `name`, created if missing (restored if deleted). Artifacts of a new
    experiment on a local sqlite store go to `mlartifacts/` beside the database."""
    client = MlflowClient(uri)
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return client.create_experiment(
                    name, artifact_location=artifact_location or default_artifact_location(uri)
                )
            except MlflowException as err:
                if (
                    err.error_code != "RESOURCE_ALREADY_EXISTS"
                ):  # else another driver created it just now
                    raise
                experiment = client.get_experiment_by_name(name)
        if experiment.lifecycle_stage == "deleted":
            log.warning("MLflow experiment %r was deleted; restoring it", name)
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    except MlflowException as err:
        raise UserError(
            f"tracking URI {mask_text(uri)}: cannot open experiment {name!r}: "
            f"{mask_text(err.message)[:300]}"
        ) from None


def open_training_experiment(uri: str, name: str) -> str:
    """`get_or_create_experiment`, marked as a model-training experiment (MLflow 3's UI then opens
    on its runs)."""
    experiment_id = get_or_create_experiment(uri, name)
    try:
        mark_training_experiment(MlflowClient(uri), experiment_id)
    except MlflowException as err:
        raise UserError(
            f"tracking URI {mask_text(uri)}: cannot tag experiment {name!r}: "
            f"{mask_text(err.message)[:300]}"
        ) from None
    return experiment_id


@dataclass(frozen=True)
class TaskRunSpec:
    """What a task's parent run records: tags task, dataset, manifest, manifest_sha256, metric and
    mode (and sweep_key, by which the parent run of an earlier unfinished driver is found again);
    `params` (e.g. the search space and sweep settings) are logged flattened and masked."""

    task: str
    dataset: str
    manifest_name: str
    manifest_sha256: str
    metric: str | None = None
    mode: str | None = None
    sweep_key: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, Any] = field(default_factory=dict)


def submitting_user() -> str:
    """Who started the sweep: MLflow's user of every run ($LOGNAME or $USER, else the
    login name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's uid without a passwd entry)
        return "unknown"


def start_task_run(uri: str, experiment_id: str, spec: TaskRunSpec) -> str:
    """Start (or, with the `sweep_key` of an earlier unfinished driver, resume) a task's parent run.
    Returns the run id."""
    client = MlflowClient(uri)
    all_tags = masked_tags(
        {
            "task": spec.task,
            "dataset": spec.dataset,
            "manifest": spec.manifest_name,
            "manifest_sha256": spec.manifest_sha256,
            "metric": spec.metric,
            "mode": spec.mode,
            "sweep_key": spec.sweep_key,
            ROLE_TAG: "task",
            MLFLOW_USER: submitting_user(),
            MLFLOW_SOURCE_NAME: f"python -m orchestrator run {spec.manifest_name}",
            MLFLOW_SOURCE_TYPE: "LOCAL",
            **spec.tags,
        }
    )
    run_id = None
    if spec.sweep_key:
        found = client.search_runs(
            [experiment_id],
            f"tags.`{ROLE_TAG}` = 'task' AND tags.task = {_quoted(spec.task)} "
            f"AND tags.sweep_key = {_quoted(spec.sweep_key)}",
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
    if run_id is None:
        run_id = client.create_run(experiment_id, run_name=spec.task, tags=all_tags).info.run_id
    log_params_once(client, run_id, spec.params)
    return run_id


def open_task_runs(
    uri: str,
    experiment: str,
    specs: Iterable[TaskRunSpec],
    manifest_path: str | Path | None,
    system_metrics: bool = False,
) -> dict[str, TrackingContext]:
    """Check the tracking store (within seconds), open the experiment as a model-training one and
    one parent run per task with the code version and the manifest; what each task's trials need.

    Args:
        uri: the tracking URI (resolve_tracking_uri).
        experiment: the experiment's name.
        specs: one per task.
        manifest_path: the manifest, logged (masked) on each parent run.
        system_metrics: whether the trials record MLflow's system metrics.
    """
    check_tracking(uri)
    experiment_id = open_training_experiment(uri, experiment)
    commit = git_commit()
    runs = {}
    for spec in specs:
        parent = start_task_run(uri, experiment_id, spec)
        log_task_lineage(uri, parent, manifest_path, commit)
        runs[spec.task] = TrackingContext(uri, experiment_id, parent, system_metrics=system_metrics)
    return runs


def end_task_run(
    uri: str, run_id: str, status: str = "FINISHED", summary: str | None = None
) -> list[str]:
    """End a task's parent run; trials still RUNNING under it are ended as KILLED (their
    worker is gone). `summary` becomes the run's description. Returns the trial runs ended."""
    client = MlflowClient(uri)
    ended = end_running_children(uri, run_id, "KILLED")
    if summary:
        client.set_tag(run_id, "mlflow.note.content", mask_text(summary)[:MAX_TAG_VALUE])
    client.set_terminated(run_id, run_status(status))
    return ended


def run_status(status: str) -> str:
    """`status` as a terminal MLflow run status (FINISHED, FAILED or KILLED); a ValueError for
    anything else."""
    status = status.upper()
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"run status {status!r}: use one of {', '.join(TERMINAL_STATUSES)}")
    return status


def trial_runs(uri: str, parent_run_id: str, status: str | None = None) -> list:
    """The trial (child) runs of a parent run, optionally only those with `status`."""
    client = MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    query = f"tags.`mlflow.parentRunId` = {_quoted(parent_run_id)}"
    if status:
        query += f" AND attributes.status = {_quoted(status)}"
    return all_pages(client.search_runs, [parent.info.experiment_id], query, ViewType.ACTIVE_ONLY)


def find_trial_run(uri: str, parent_run_id: str, trial_name: str) -> str | None:
    """The run id of trial `trial_name` under the parent run, if it has one."""
    for run in trial_runs(uri, parent_run_id):
        if run.data.tags.get("trial") == trial_name:
            return run.info.run_id
    return None


def set_trial_status(
    uri: str,
    parent_run_id: str,
    trial_name: str,
    status: str,
    tags: Mapping[str, Any] | None = None,
) -> str | None:
    """End a trial's run from the driver (e.g. a Tune callback: error -> FAILED, early stop ->
    KILLED, complete -> FINISHED), with `tags` (masked) set first. Returns the run id, or None when
    the trial has no run.

    Args:
        uri: the tracking URI.
        parent_run_id: the task's run.
        trial_name: the trial, as its run's `trial` tag names it.
        status: FINISHED, FAILED or KILLED.
        tags: set on the run before it ends.
    """
    run_id = find_trial_run(uri, parent_run_id, trial_name)
    if run_id:
        client = MlflowClient(uri)
        if tags:
            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in masked_tags(tags).items()])
        client.set_terminated(run_id, run_status(status))
    return run_id


def record_task_outcome(
    uri: str, run_id: str, metrics: Mapping[str, float | None], tags: Mapping[str, Any]
) -> None:
    """What a task's sweep found, on its parent run: numbers as metrics (None left out) named apart
    from the trials' series (`best_psnr` -> `best/psnr`), the rest as tags."""
    now = int(time.time() * 1000)
    MlflowClient(uri).log_batch(
        run_id,
        metrics=[
            Metric(task_metric_name(k), float(v), now, 0)
            for k, v in metrics.items()
            if v is not None
        ],
        tags=[RunTag(k, v) for k, v in masked_tags(tags).items()],
    )


def _cell(value: Any) -> Any:
    """Numbers stay numbers (sortable), 10.0 as 10; anything else is its one string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return canonical_number(value)
    return param_string(value)


TRIALS_TABLE = "trials.json"  # on a task's run: one row per trial (MLflow's artifact table view)


def log_trials_table(uri: str, run_id: str, rows: list[Mapping[str, Any]]) -> None:
    """The task's trials as one table on its run (sortable in the UI's artifact view): numbers as
    numbers, anything else as its one string (orchestrator.tracking.naming)."""
    if not rows:
        return
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = {key: [_cell(row.get(key)) for row in rows] for key in columns}
    MlflowClient(uri).log_table(run_id, table, TRIALS_TABLE)


def end_running_children(uri: str, parent_run_id: str, status: str = "KILLED") -> list[str]:
    """Mark the parent's trial runs still RUNNING as `status` (for a driver that is being
    stopped, or a sweep that ended while workers were killed). Returns their ids."""
    client = MlflowClient(uri)
    ended = []
    for run in trial_runs(uri, parent_run_id, status="RUNNING"):
        client.set_terminated(run.info.run_id, run_status(status))
        ended.append(run.info.run_id)
    return ended


def log_params_once(client: MlflowClient, run_id: str, values: Mapping[str, Any]) -> None:
    """Log the params the run lacks; a param cannot change, so a differing value is only warned
    about."""
    existing = client.get_run(run_id).data.params
    new = []
    for key, value in safe_params(canonical_params(values)).items():
        if key not in existing:
            new.append(Param(key, value))
        elif existing[key] != value:
            log.warning(
                "run %s: param %s is already %r; keeping it (not %r)",
                run_id,
                key,
                existing[key],
                value,
            )
    for start in range(0, len(new), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=new[start : start + 100])
