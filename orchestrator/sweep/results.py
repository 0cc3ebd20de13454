"""What a sweep found, per task: written as `results/<experiment>.json`, read back as Python
objects.

    from orchestrator.sweep.results import load_results
    results = load_results("results/quickstart.json")
    task = results["colorshift"]
    task.best.trial_id, task.best.best_epoch, task.best.metric  # the winner, its best epoch, value
    task.baseline, task.improvement      # the paper's setting, and by how much the best beat it
    task.history(task.best.trial_id)     # that trial's epochs: one dict each
    task.history_frame()                 # every trial's epochs as one pandas DataFrame

No Ray here: reading results needs neither a cluster nor MLflow.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cyclegan.errors import UserError
from orchestrator.config.aliases import alias_note
from orchestrator.redact import mask_text
from orchestrator.search.schedulers.pbt import best_before, first_exploit_epoch
from orchestrator.sweep.best_value import best_text
from orchestrator.sweep.constraints import summary_lines

# How a trial ended. Only finished and stopped trials are ranked: a failed or diverged trial keeps
# its best epoch in storage and in the results file, but an unhealthy run does not become the
# champion.
STATUSES = ("finished", "stopped", "diverged", "failed")
RANKED_STATUSES = ("finished", "stopped")


@dataclass
class TrialRecord:
    trial_id: str
    params: dict[str, Any]
    status: str  # one of STATUSES; stopped: by the scheduler, the time budget or max_failed_trials
    metric: float | None  # the trial's best value of the task's metric (at best_epoch)
    epochs: int  # epochs trained
    history: list[dict]  # one row per epoch: losses, metrics, throughput
    checkpoint: str | None  # the last checkpoint (what a resumed trial continues from)
    error: str | None = None
    best_epoch: int | None = (
        None  # the epoch of `metric` (ties: the later one); a stopped trial's may be one
    )
    # its workers finished while the stop reached them (> epochs)
    metric_ci: list[float] | None = None  # [low, high]: the 95 % interval of `metric`
    best_checkpoint: str | None = None  # its generators, in storage (orchestrator.storage.best)
    baseline: bool = False  # the paper's setting (orchestrator.config.baseline)
    note: str | None = (
        None  # how it ended, when not finished: the scheduler, the budget, the divergence
    )
    lineage: dict | None = (
        # PBT: its exploits and the values its weights were trained with
        # (orchestrator.search.schedulers.pbt)
        None
    )

    @classmethod
    def from_dict(cls, data: dict) -> TrialRecord:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class TaskResult:
    task: str
    data: str
    metric: str
    mode: str
    trials: list[TrialRecord]
    best_trial_id: str | None
    registry: dict | None = None
    baseline_trial_id: str | None = None
    stopped: str | None = (
        None  # why the task's sweep ended early (time budget, failed trials), if it did
    )
    # The test images scored untranslated, under the best's protocol: {"value", "ci", "protocol"}
    untranslated: dict | None = None
    # The best trial's improvement, image by image, as [estimate, ci low, ci high] (positive:
    # better) over the untranslated inputs and over the baseline trial (orchestrator.sweep.verdict)
    over_untranslated: list[float] | None = None
    over_baseline: list[float] | None = None
    repeats: int = 1  # search.repeats > 1: configurations' seeds, means, intervals (sweep.seeds)
    configurations: list[dict] | None = None
    constraints: dict | None = None  # {"unranked": {trial: why}, "unchecked": [...]}: constraints
    delivery: dict | None = None  # the champion's translation of `deliver:` (sweep.delivery)

    @property
    def best(self) -> TrialRecord | None:
        return self.trial(self.best_trial_id)

    @property
    def baseline(self) -> TrialRecord | None:
        return self.trial(self.baseline_trial_id)

    def trial(self, trial_id: str | None) -> TrialRecord | None:
        return next((t for t in self.trials if t.trial_id == trial_id), None) if trial_id else None

    @property
    def beats_untranslated(self) -> bool | None:
        """The best trial beats the untranslated inputs beyond the noise (None: not measured)."""
        return None if self.over_untranslated is None else self.over_untranslated[1] > 0

    @property
    def baseline_mutated_at(self) -> int | None:
        """The epoch from which PBT trained the baseline trial with other values than the paper's
        (None: never)."""
        return first_exploit_epoch(self.baseline.lineage) if self.baseline else None

    @property
    def baseline_value(self) -> float | None:
        """The paper's values' score: the baseline's best epoch, before PBT first mutated them."""
        baseline, mutated = self.baseline, self.baseline_mutated_at
        if baseline is None or mutated is None:
            return baseline.metric if baseline else None
        return best_before(baseline.history, self.metric, self.mode, mutated)

    @property
    def improvement(self) -> float | None:
        """How much better the best trial's value is than the baseline's (positive: better, in the
        metric's own units), or None when either has no value."""
        best, reference = self.best, self.baseline_value
        if best is None or best.metric is None or reference is None:
            return None
        return reference - best.metric if self.mode == "min" else best.metric - reference

    def history(self, trial_id: str) -> list[dict]:
        trial = self.trial(trial_id)
        if trial is None:
            raise KeyError(
                f"task {self.task} has no trial {trial_id!r} (trials: "
                f"{', '.join(t.trial_id for t in self.trials)})"
            )
        return trial.history

    @property
    def histories(self) -> dict[str, list[dict]]:
        return {t.trial_id: t.history for t in self.trials}

    def history_frame(self):
        """Every trial's epochs as one pandas DataFrame, with `trial_id` and `baseline` columns."""
        import pandas as pd

        rows = [
            {"trial_id": t.trial_id, "baseline": t.baseline, **row}
            for t in self.trials
            for row in t.history
        ]
        return pd.DataFrame(rows)

    def first_error(self) -> str | None:
        """The last line of the first failed trial's error: where Ray's wrapped tracebacks say what
        went wrong."""
        error = next((t.error for t in self.trials if t.error), None)
        lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
        return mask_text(lines[-1])[:300] if lines else None

    def to_dict(self) -> dict:
        best = self.best
        return {
            **asdict(self),
            "best_trial": self.best_trial_id,
            "best_epoch": best.best_epoch if best else None,
            "baseline_trial": self.baseline_trial_id,
            "improvement_over_baseline": self.improvement,
        }

    @classmethod
    def from_dict(cls, data: dict) -> TaskResult:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["trials"] = [TrialRecord.from_dict(t) for t in data.get("trials", [])]
        return cls(**values)


def ranked(trials: list[TrialRecord]) -> list[TrialRecord]:
    """The trials that take part in the ranking: finished or stopped, with a value."""
    return [
        t
        for t in trials
        if t.status in RANKED_STATUSES and t.metric is not None and not math.isnan(t.metric)
    ]


def pick_best(trials: list[TrialRecord], mode: str) -> TrialRecord | None:
    """The trial with the best best-epoch value among the finished and stopped ones (an ASHA-stopped
    trial wins if its best is best: its best epoch's generators are in storage); ties go to the
    earlier trial."""
    scored = ranked(trials)
    if not scored:
        return None
    return (min if mode == "min" else max)(scored, key=lambda t: t.metric)


# ------------------------------------------------------------------------------------------------
# The results file


@dataclass
class ExperimentResults:
    experiment: str
    manifest: str
    storage: str
    finished_at: str
    tasks: list[TaskResult] = field(default_factory=list)
    manifest_sha256: str = ""

    def __getitem__(self, task: str) -> TaskResult:
        found = next((t for t in self.tasks if t.task == task), None)
        if found is None:
            raise KeyError(
                f"{self.experiment} has no task {task!r} (tasks: "
                f"{', '.join(t.task for t in self.tasks)})"
            )
        return found

    def __iter__(self):
        return iter(self.tasks)


def write_results(
    results: list[TaskResult],
    experiment: str,
    manifest: Path | str,
    manifest_sha256: str,
    storage: str,
    path: Path,
) -> Path:
    """Write the experiment's results file (what `load_results` reads); returns its path.

    Args:
        results: one per task.
        experiment: the manifest's name.
        manifest: the manifest's path; manifest_sha256: its content's hash.
        storage: where the trials' checkpoints are (credentials left out).
        path: the file to write (its folder is created).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "experiment": experiment,
        "manifest": str(manifest),
        "manifest_sha256": manifest_sha256,
        "storage": storage,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tasks": [r.to_dict() for r in results],
    }
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def load_results(path: str | Path) -> ExperimentResults:
    """A finished (or interrupted) experiment's results file, as written by `python -m orchestrator
    run`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return ExperimentResults(
            experiment=data["experiment"],
            manifest=data.get("manifest", ""),
            storage=data.get("storage", ""),
            finished_at=data.get("finished_at", ""),
            manifest_sha256=data.get("manifest_sha256", ""),
            tasks=[TaskResult.from_dict(t) for t in data["tasks"]],
        )
    except FileNotFoundError:
        raise UserError(
            f"{path}: no results file (`python -m orchestrator run MANIFEST` writes "
            f"results/<name>.json)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{path}: not a results file of `python -m orchestrator run` ({type(err).__name__}: "
            f"{err})"
        ) from None


# ------------------------------------------------------------------------------------------------
# The summary table


def summary_table(results: list[TaskResult]) -> str:
    """One row per task: its best trial, the best epoch's value, how it compares with the
    baseline."""
    rows = [
        (
            "task",
            "best trial",
            "metric [95% interval] (best epoch)",
            "vs untranslated",
            "vs baseline",
            "hyperparameters",
            "trials",
            "best checkpoint",
        )
    ]
    for r in results:
        counts: dict[str, int] = {}
        for t in r.trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        trials = ", ".join(f"{n} {s}" for s, n in counts.items())
        if r.stopped:
            trials += f" ({r.stopped})"
        best = r.best
        if best is None:
            rows.append(
                (r.task, "-", f"{r.metric}: no successful trial", "-", _versus(r), "-", trials, "-")
            )
            continue
        params = " ".join(f"{k}={_short(v)}" for k, v in best.params.items())
        paper = best.baseline and r.baseline_mutated_at is None  # PBT mutated: not the paper's
        name = f"{best.trial_id}*" if paper else best.trial_id
        rows.append(
            (
                r.task,
                name,
                best_text(r, best),
                _versus_untranslated(r),
                _versus(r),
                params or "-",
                trials,
                best.best_checkpoint or best.checkpoint or "-",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(r.baseline_trial_id for r in results):
        lines.append("* the baseline: the paper's values of the searched hyperparameters")
    for r in results:
        if r.beats_untranslated is False:
            lines.append(
                f"{r.task}: no trial beat the untranslated inputs beyond the noise "
                f"({r.metric} {r.untranslated['value']:.4g}); champion not moved to it"
            )
    lines += [line for r in results for line in summary_lines(r.task, r.constraints)]
    if note := alias_note(k for r in results if r.best for k in r.best.params):
        lines.append(
            f"hyperparameters as searched: {note} (the names MLflow and the registry record)"
        )
    return "\n".join(lines)


def _difference(gain: list[float]) -> str:
    return f"{gain[0]:+.3g} [{gain[1]:+.3g}, {gain[2]:+.3g}]"


def _versus_untranslated(result: TaskResult) -> str:
    """'+2.1 [+1.5, +2.7] over 16.32', the same 'within the noise' or 'worse', or '-'."""
    gain, reference = result.over_untranslated, result.untranslated
    if gain is None or reference is None:
        return "-"
    verdict = "" if gain[1] > 0 else "worse: " if gain[2] < 0 else "within the noise: "
    return f"{verdict}{_difference(gain)} over {reference['value']:.4g}"


def _versus(result: TaskResult) -> str:
    """'beat it by 1.2 (8%)' (with its interval when measured image by image), 'within the
    noise', 'the baseline is best', or why there is no comparison."""
    baseline, best = result.baseline, result.best
    if baseline is None:
        return "-"
    if baseline.metric is None or baseline.status not in RANKED_STATUSES:
        return f"baseline {baseline.status}, no value"
    mutated, reference = result.baseline_mutated_at, result.baseline_value
    before = "" if mutated is None else f"the baseline trial was mutated at epoch {mutated}; "
    if reference is None:
        return f"{before}no value before"
    if mutated is not None:
        before += "compared with its value before: "
    gain = result.improvement  # >= 0: the baseline is ranked with the others
    if best is baseline and not gain:
        return f"{before}the baseline is best"
    share = f" ({gain / abs(reference):.0%})" if reference else ""
    paired = None if mutated is not None else result.over_baseline
    if paired is None:
        return f"{before}beat it by {gain:.4g}{share}"
    if paired[1] > 0:
        return f"beat it by {_difference(paired)}{share}"
    return f"within the noise: {_difference(paired)}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
