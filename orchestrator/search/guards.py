"""Guard rails of each task's sweep: divergence, a time budget, a cap on failed trials.

`SweepGuard` holds one task's rules and state; `TaskGuards`, the Tune stopper and a Tune callback
of the manifest's one Tune run, routes each trial to its task's guard (orchestrator.sweep.router
stops the trials of a task whose guard says so):

- **Divergence.** A trial has diverged when an epoch reports a non-finite loss or metric, or a
  metric more than `divergence_factor` times worse than the baseline trial's at the same epoch
  (or at its latest earlier epoch, when the baseline has not got that far; nothing is compared
  before the baseline's first epoch): for a metric to minimize, `value > factor × baseline`; to
  maximize, `value < baseline / factor`. The ratio only means something for positive numbers, so
  the rule is skipped while the baseline's value is not positive. The trial is stopped (Tune's
  STOP: not an error, so FailureConfig never retries it) and its result carries the reason under
  `diverged`; the baseline itself only diverges on non-finite numbers.
- **Time budget.** Once `time_budget_s` has passed since the task's sweep started (a resumed sweep
  starts the clock again), every running trial of the task is stopped and no new one starts.
- **Failed trials.** Once `max_failed_trials` trials of the task have failed for good (after their
  retries), the same.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ray.tune import Callback, Stopper

from cyclegan.metric_names import EPOCH_METRICS, LOSS_NAMES
from orchestrator.config.baseline import baseline_trial
from orchestrator.sweep.router import by_task, task_of

DIVERGED = "diverged"  # the result key holding why a trial diverged
WATCHED = frozenset(
    {f"loss_{name}" for name in LOSS_NAMES} | set(EPOCH_METRICS)
)  # the losses, loss_G, cycle_l1


def nonfinite(result: dict[str, Any], metric: str) -> str | None:
    """The first loss or metric of `result` that is NaN or infinite, as 'name is value'."""
    for key, value in result.items():
        if (
            (key == metric or key in WATCHED)
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
            and not math.isfinite(value)
        ):
            return f"{key} is {value}"
    return None


def far_worse(value: float, reference: float, factor: float, mode: str) -> bool:
    """`value` is more than `factor` times worse than a positive `reference`."""
    if not (math.isfinite(reference) and reference > 0):
        return False
    return value > factor * reference if mode == "min" else value < reference / factor


class SweepGuard(Callback, Stopper):
    def __init__(
        self,
        metric: str,
        mode: str,
        baseline: dict[str, Any] | None,
        divergence_factor: float | None = None,
        time_budget_s: float | None = None,
        max_failed_trials: int | None = None,
    ):
        self.metric, self.mode, self.baseline = metric, mode, baseline
        self.divergence_factor, self.time_budget_s, self.max_failed_trials = (
            divergence_factor,
            time_budget_s,
            max_failed_trials,
        )
        self.baseline_id: str | None = None
        self.configs: dict[str, dict] = {}  # every trial's config, in Tune's order of creation
        self.baseline_values: dict[int, float] = {}  # the baseline's metric by epoch
        self.failed = 0
        self.completed: set[str] = set()  # trials Tune ended one by one (the rest: by stop_all)
        self.stop_reason: str | None = None
        self._started: float | None = None
        self._first_step = True

    # -- Tune callback -----------------------------------------------------------------------
    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if len(trials) != len(self.configs):  # a trial's config never changes once it is created
            self.configs = {t.trial_id: dict(t.config or {}) for t in trials}
        if (
            self.baseline_id is None
        ):  # the first matching trial created: once found, later trials cannot change it
            self.baseline_id = baseline_trial(self.configs.items(), self.baseline)
        if self._first_step:
            # A resumed sweep starts with the trials that ended before: none of them is this guard's
            # doing, and the baseline's last result before the interruption is all that is left of
            # its history.
            self._first_step = False
            self.completed |= {t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")}
            last = (
                next((t.last_result for t in trials if t.trial_id == self.baseline_id), None) or {}
            )
            self._note_baseline(last)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.completed.add(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.completed.add(trial.trial_id)
        self.failed += 1

    # -- Tune stopper ------------------------------------------------------------------------
    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if trial_id == self.baseline_id:
            self._note_baseline(result)
        reason = self.divergence(trial_id, result)
        if reason is None:
            return False
        # Tune hands this same dict to the callbacks and keeps it as the trial's last result (and in
        # its saved state): the reason survives the stop, and a resumed sweep.
        result[DIVERGED] = reason
        return True

    def stop_all(self) -> bool:
        now = time.monotonic()
        if self._started is None:
            self._started = now
        if (
            self.stop_reason is None
            and self.time_budget_s is not None
            and now - self._started >= self.time_budget_s
        ):
            self.stop_reason = f"the task's time budget of {self.time_budget_s:g} s ran out"
        if (
            self.stop_reason is None
            and self.max_failed_trials is not None
            and self.failed >= self.max_failed_trials
        ):
            self.stop_reason = (
                f"{self.failed} trial(s) failed (search.max_failed_trials: "
                f"{self.max_failed_trials})"
            )
        return self.stop_reason is not None

    # -- the rules ---------------------------------------------------------------------------
    def divergence(self, trial_id: str, result: dict[str, Any]) -> str | None:
        epoch = result.get("epoch")
        where = f"at epoch {epoch}" if epoch is not None else ""
        bad = nonfinite(result, self.metric)
        if bad:
            return f"{where}: {bad}".lstrip(": ")
        value = result.get(self.metric)
        if (
            self.divergence_factor is None
            or trial_id == self.baseline_id
            or not isinstance(value, (int, float))
            or not isinstance(epoch, int)
        ):
            return None
        reference = self._baseline_at(epoch)
        if reference is None or not far_worse(
            float(value), reference[1], self.divergence_factor, self.mode
        ):
            return None
        relation = "above" if self.mode == "min" else "below"
        return (
            f"{where}: {self.metric} {value:.4g} is more than {self.divergence_factor:g}x "
            f"{relation} the baseline's "
            f"{reference[1]:.4g} (epoch {reference[0]})"
        )

    def _note_baseline(self, result: dict[str, Any]) -> None:
        epoch, value = result.get("epoch"), result.get(self.metric)
        if isinstance(epoch, int) and isinstance(value, (int, float)) and math.isfinite(value):
            self.baseline_values[epoch] = float(value)

    def _baseline_at(self, epoch: int) -> tuple[int, float] | None:
        earlier = [e for e in self.baseline_values if e <= epoch]
        return (max(earlier), self.baseline_values[max(earlier)]) if earlier else None


class TaskGuards(Callback, Stopper):
    """Every task's `SweepGuard` behind the one Tune run: each trial's events and results go to its
    task's guard (by `config["task"]`), each guard sees only its task's trials. The run itself never
    stops all at once: `stopping()` names the tasks whose guard says stop, which the dispatching
    scheduler then ends (orchestrator.sweep.router.TaskScheduler)."""

    def __init__(self, guards: dict[str, SweepGuard]):
        self.guards = guards
        self.tasks: dict[str, str] = {}  # trial id -> task, from the trials Tune lists at each step
        self._stopping: set[str] = set()

    def guard_of(self, trial_id: str) -> SweepGuard | None:
        task = self.tasks.get(trial_id)
        return self.guards.get(task) if task else None

    def stopping(self) -> set[str]:
        """The tasks whose guard has said stop (time budget, failed trials)."""
        return self._stopping

    # -- Tune callback -----------------------------------------------------------------------
    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if len(trials) != len(self.tasks):
            self.tasks = {t.trial_id: task_of(t) for t in trials}
        own = by_task(trials, self.guards)
        for task, guard in self.guards.items():
            guard.on_step_begin(iteration, own[task], **info)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        if guard := self.guards.get(task_of(trial)):
            guard.on_trial_complete(iteration, trials, trial, **info)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        if guard := self.guards.get(task_of(trial)):
            guard.on_trial_error(iteration, trials, trial, **info)

    # -- Tune stopper ------------------------------------------------------------------------
    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        guard = self.guard_of(trial_id)
        return guard(trial_id, result) if guard is not None else False

    def stop_all(self) -> bool:
        self._stopping |= {task for task, guard in self.guards.items() if guard.stop_all()}
        return False
