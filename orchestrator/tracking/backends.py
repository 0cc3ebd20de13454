"""Which tracking backend records a trial: `open_trial_recorder`, the one place a backend is chosen.

A second backend is one implementation of orchestrator.tracking.recorder.TrialRecorder plus one line
here. No mlflow import at module level: the trial side imports this freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.tracking.context import TrackingContext
from orchestrator.tracking.recorder import TrialRecorder


def open_trial_recorder(
    context: TrackingContext, params: Mapping[str, Any] | None = None
) -> TrialRecorder:
    """The recorder of trial `context.trial` under its task's record, with `params` logged once."""
    from orchestrator.tracking.mlflow_recorder import MlflowTrialRecorder

    return MlflowTrialRecorder(context, params)
