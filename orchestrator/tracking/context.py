"""Where a trial's tracking goes: plain ids the driver made, safe to send to any Ray process.

No mlflow import here: the driver's sweep and the trial processes pass this around, and only the
recorder that a trial opens from it (orchestrator.tracking.backends.open_trial_recorder) talks to
MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class TrackingContext:
    """One task's MLflow ids; `trial` is set once a trial's own run is meant."""

    uri: str
    experiment_id: str
    parent_run_id: str
    system_metrics: bool = False
    trial: str | None = None

    def for_trial(self, trial_id: str) -> TrackingContext:
        return replace(self, trial=trial_id)
