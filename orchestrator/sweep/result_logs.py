"""Tune's per-trial result files, `progress.csv` and `result.json`, kept whole across a trial's
restarts.

Tune's own loggers, when a trial restarts from a checkpoint (a retry, a PBT exploit or pause),
replace the driver's copy of these files with the copy in storage, which Tune syncs only every
so often: the epochs reported since the last sync would vanish from the trial's history (what the
results file is built from). These loggers keep the driver's copy when it has one, and take the
copy in storage only when it has none (a resumed sweep's new driver).
"""

from __future__ import annotations

from pathlib import Path

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from orchestrator.ray_internals import RestoreFromRemoteHook


class _KeepDriversCopy(RestoreFromRemoteHook):
    def restores_from_remote(self, file_name: str, trial) -> bool:
        local = Path(trial.local_path, file_name)
        return not (local.is_file() and local.stat().st_size > 0)


class ProgressCsvLogger(_KeepDriversCopy, CSVLoggerCallback):
    """progress.csv: one row per result."""


class ResultJsonLogger(_KeepDriversCopy, JsonLoggerCallback):
    """result.json: one JSON line per result."""


def result_loggers() -> list:
    """The loggers whose files the results' histories and a resumed sweep read."""
    return [ProgressCsvLogger(), ResultJsonLogger()]
