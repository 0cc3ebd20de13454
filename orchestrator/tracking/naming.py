"""How values and names look in MLflow: one string per value, the params worth a column, metric
namespaces.

The trainer, the progress line and the results keep their own names; only what is written to MLflow
is renamed here, at its boundary:

- a value has one string (`param_string`): 10.0 and 10 are both `10`, so a search
  `params.lambda_A = '10'` finds every trial; None and empty strings are not logged at all;
- a trial's params are its hyperparameters and the options that differ from the defaults
  (`trial_params`); the whole configuration goes beside them as the `config.json` artifact;
- timings and throughput sit under `time/` and `throughput/` (`metric_name`), constants of a run
  (`RUN_CONSTANTS`) are params or tags once, and a task's summaries are `best/…`, `baseline/…`
  (`task_metric_name`), apart from its trials' per-epoch series.

No mlflow import here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from cyclegan.config import TrainConfig

# Options that only say where a process kept its files: dead paths once the trial ends (a Ray
# session folder, a node's cache), or the run's own name.
LOCAL_OPTIONS = ("checkpoints_dir", "cache_dir", "name")
# Reported each epoch, constant over a run: params (world size, batch) or a tag (the resume point).
RUN_CONSTANTS = {"world_size": "param", "batch_size_total": "param", "resumed_from_epoch": "tag"}
RESUMED_TAG = "cyclegan.resumed_from_epoch"
TIME_NAMESPACE, THROUGHPUT_NAMESPACE = "time/", "throughput/"
# A task's summaries: `best_psnr` -> `best/psnr`, `improvement_over_baseline` ->
# `improvement/over_baseline`.
SUMMARY_PREFIXES = ("best", "baseline", "untranslated", "improvement")


def param_string(value: Any) -> str | None:
    """The one string of a param or hyperparameter tag value; None for nothing (None, "")."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return json.dumps([canonical_number(v) for v in value])
    return str(value)


def canonical_number(value: Any) -> Any:
    """A number as JSON should write it: integral floats as integers (10.0 -> 10); others as they
    are."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def canonical_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` (nested mappings kept) with each leaf as its one string, the empty ones left out."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            nested = canonical_params(value)
            if nested:
                out[key] = nested
        elif (text := param_string(value)) is not None:
            out[key] = text
    return out


def trial_params(config: Mapping[str, Any], hyperparameters: Iterable[str] = ()) -> dict[str, str]:
    """A trial run's params: its `hyperparameters` (always, so every trial of a task has the same
    columns) and the options that differ from TrainConfig's defaults, without local paths."""
    defaults = canonical_params(TrainConfig().to_record())
    values = canonical_params(config)
    wanted = set(hyperparameters)
    return {
        key: value
        for key, value in values.items()
        if key not in LOCAL_OPTIONS and (key in wanted or defaults.get(key) != value)
    }


def metric_name(key: str) -> str:
    """The MLflow name of a reported per-epoch value: timings under `time/`, rates under
    `throughput/`, the model's metrics as they are."""
    if key.startswith((TIME_NAMESPACE, THROUGHPUT_NAMESPACE)):
        return key
    if key.endswith("_per_s"):
        return THROUGHPUT_NAMESPACE + key
    if key.endswith(("_s", "_fraction")):
        return TIME_NAMESPACE + key
    return key


def task_metric_name(key: str) -> str:
    """The MLflow name of a task's summary on its parent run (distinct from the trials' series)."""
    head, sep, tail = key.partition("_")
    return f"{head}/{tail}" if sep and head in SUMMARY_PREFIXES else key


def hyperparameter_names(parent_params: Mapping[str, str]) -> list[str]:
    """The searched TrainConfig fields of a task, from its run's `space.<name>.<distribution>`
    params."""
    return sorted({key.split(".")[1] for key in parent_params if key.startswith("space.")})
