"""The MLflow `TrialRecorder` (orchestrator.tracking.recorder): a trial's child run under its task's
run.

A trial's run is found again by its tags (parent run + `trial=<name>`), so a trial that restarts
after a failure appends to the run it already has: no duplicate runs, and `log_epoch` drops epochs
the run already holds, so steps stay unique and increasing (epochs re-trained after a resume keep
the values of their first attempt).
"""

from __future__ import annotations

import numbers
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from PIL import Image

from cyclegan.metric_names import FALLBACK_REASON, PROTOCOL_KEY
from orchestrator.redact import MAX_TAG_VALUE, mask_text
from orchestrator.tracking.context import TrackingContext
from orchestrator.tracking.lineage import log_dataset_input, start_system_metrics
from orchestrator.tracking.naming import (
    RESUMED_TAG,
    RUN_CONSTANTS,
    hyperparameter_names,
    metric_name,
    param_string,
    trial_params,
)
from orchestrator.tracking.recorder import CONFIG_ARTIFACT, TrialRecorder, masked_config
from orchestrator.tracking.runs import (
    INHERITED_TAGS,
    LAST_EPOCH_TAG,
    ROLE_TAG,
    find_trial_run,
    log_params_once,
    masked_tags,
    run_status,
)


class MlflowTrialRecorder(TrialRecorder):
    """Records one trial into its child run. Create it on rank 0 only.

    `tracking` (plain ids, see orchestrator.tracking.context) names the task's run and the trial.
    """

    def __init__(
        self,
        tracking: TrackingContext,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ):
        uri, experiment_id, parent_run_id, trial_name = (
            tracking.uri,
            tracking.experiment_id,
            tracking.parent_run_id,
            str(tracking.trial),
        )
        self.uri, self.parent_run_id, self.trial_name = uri, parent_run_id, trial_name
        self.client = MlflowClient(uri)
        existing = find_trial_run(uri, parent_run_id, trial_name)
        parent = self.client.get_run(parent_run_id).data
        if existing:
            self.run_id = existing
            self.client.update_run(existing, status="RUNNING")
            self.resumed = True
        else:
            inherited = {k: parent.tags[k] for k in INHERITED_TAGS if k in parent.tags}
            run_tags = masked_tags(
                {
                    **inherited,
                    **(tags or {}),
                    "mlflow.parentRunId": parent_run_id,
                    "trial": trial_name,
                    ROLE_TAG: "trial",
                }
            )
            self.run_id = self.client.create_run(
                experiment_id, run_name=trial_name, tags=run_tags
            ).info.run_id
            self.resumed = False
        if params:  # the whole configuration as a file, the params that tell trials apart
            self.log_artifact(masked_config(params), CONFIG_ARTIFACT)
            chosen = trial_params(params, hyperparameter_names(parent.params))
            log_params_once(self.client, self.run_id, chosen)
        self.constants_logged = False
        self.last_step = self._last_logged_step()
        self.system_metrics = (
            start_system_metrics(uri, self.run_id, self.resumed)
            if tracking.system_metrics
            else None
        )

    def _last_logged_step(self) -> int:
        """The highest step of any metric the run holds (-1 for none): read once, on (re)start."""
        keys = self.client.get_run(self.run_id).data.metrics
        steps = [m.step for key in keys for m in self.client.get_metric_history(self.run_id, key)]
        return max(steps, default=-1)

    def log_dataset(self, reference: str, folder: str | Path) -> None:
        dataset = log_dataset_input(self.client, self.run_id, reference, folder)
        # the task's run shows the data its trials trained on (MLflow links it once per run)
        log_dataset_input(self.client, self.parent_run_id, reference, folder, dataset=dataset)

    def log_epoch(self, epoch: int, metrics: Mapping[str, Any]) -> bool:
        if epoch <= self.last_step:
            return False
        now = int(time.time() * 1000)
        batch = [
            Metric(metric_name(key), float(value), now, epoch)
            for key, value in metrics.items()
            if key != "epoch" and key not in RUN_CONSTANTS and isinstance(value, numbers.Real)
        ]  # numpy scalars too
        tags = [RunTag(LAST_EPOCH_TAG, str(epoch))]
        if not self.constants_logged:  # once per (re)start: the resume point is a tag
            self._log_constants(metrics)
        if metrics.get(PROTOCOL_KEY):  # how the evaluation scored (cyclegan.scores)
            tags.append(RunTag("protocol", str(metrics[PROTOCOL_KEY])[:MAX_TAG_VALUE]))
        if metrics.get(
            FALLBACK_REASON
        ):  # why the trial left torch.compile / CUDA graphs for the eager step
            tags.append(
                RunTag(FALLBACK_REASON, mask_text(str(metrics[FALLBACK_REASON]))[:MAX_TAG_VALUE])
            )
        for start in range(0, len(batch), 1000):
            self.client.log_batch(
                self.run_id, metrics=batch[start : start + 1000], tags=tags if start == 0 else ()
            )
        self.last_step = epoch
        return True

    def _log_constants(self, metrics: Mapping[str, Any]) -> None:
        values = {k: metrics[k] for k in RUN_CONSTANTS if k in metrics}
        log_params_once(
            self.client,
            self.run_id,
            {k: v for k, v in values.items() if RUN_CONSTANTS[k] == "param"},
        )
        if "resumed_from_epoch" in values:
            self.set_tags({RESUMED_TAG: param_string(values["resumed_from_epoch"])})
        self.constants_logged = True

    def log_values(
        self, step: int, values: Mapping[str, float], tags: Mapping[str, Any] | None = None
    ) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(k, v, now, step) for k, v in values.items()],
            tags=[RunTag(k, v) for k, v in masked_tags(tags or {}).items()],
        )

    def log_artifact(
        self, source: str | Path | Mapping[str, Any], path: str, step: int | None = None
    ) -> str:
        folder, name = str(PurePosixPath(path).parent), PurePosixPath(path).name
        if isinstance(source, Mapping):
            self.client.log_dict(self.run_id, dict(source), path)
            return path
        source = Path(source)
        if source.is_dir():
            self.client.log_artifacts(self.run_id, str(source), path)
            return path
        if step is not None:  # the UI's step slider: an image series named after the folder
            with Image.open(source) as image:
                self.client.log_image(self.run_id, image.convert("RGB"), key=folder, step=step)
        if source.name == name:
            self.client.log_artifact(self.run_id, str(source), folder)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                shutil.copyfile(source, Path(tmp) / name)
                self.client.log_artifact(self.run_id, str(Path(tmp) / name), folder)
        return path

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in masked_tags(tags).items():
            self.client.set_tag(self.run_id, key, value)

    def close(self) -> None:
        if self.system_metrics is not None:
            self.system_metrics.finish()
            self.system_metrics = None

    def finish(self, status: str = "FINISHED") -> None:
        self.close()
        self.client.set_terminated(self.run_id, run_status(status))

    def __enter__(self) -> MlflowTrialRecorder:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.finish("FINISHED")
        else:  # a retried trial sets its run back to RUNNING when it starts again
            self.finish("KILLED" if issubclass(kind, (KeyboardInterrupt, SystemExit)) else "FAILED")
