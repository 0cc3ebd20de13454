"""What a sweep's tasks found, from Tune's results: each trial's record (its history, its best
epoch with its interval, how it ended) and each task's result (orchestrator.sweep.results)."""

from __future__ import annotations

import math
from pathlib import Path

import ray

import orchestrator.search.schedulers.pbt as pbt
from cyclegan.metric_names import EPOCH_METRICS, EVAL_METRICS
from cyclegan.scores import ci_keys
from orchestrator.config.baseline import baseline_trial
from orchestrator.config.plan import TaskPlan
from orchestrator.search.guards import SweepGuard, TaskGuards
from orchestrator.storage.best import BEST_CHECKPOINT, BEST_DIR, BEST_EPOCH, best_key, read_best
from orchestrator.storage.location import Storage, parse_storage, trial_run_name
from orchestrator.sweep.constraints import broken, unchecked
from orchestrator.sweep.progress import ending
from orchestrator.sweep.results import TaskResult, TrialRecord, pick_best, ranked
from orchestrator.sweep.router import by_task, task_of, without_task
from orchestrator.sweep.seeds import best_configuration
from orchestrator.trial.trainable import SweepContext

# What a trial's history (results file) keeps of each epoch: losses, the metrics that can rank
# trials, speed, the best so far, and the searched hyperparameters' values that epoch trained with
# (PBT changes them).
HISTORY_PREFIXES = ("loss_", *EPOCH_METRICS, *EVAL_METRICS, "pairs_per_s", "best_", pbt.HP_PREFIX)


# The error of a trial Tune saw fail for good whose error file Ray could not write to the storage.
LOST_ERROR = (
    "failed for good; its error could not be read from the storage (Ray could not upload it): "
    "see the trial's log in Ray's session folder"
)


def _record(
    result,
    plan: TaskPlan,
    baseline_id: str | None,
    guard: SweepGuard,
    trials: Storage,
    failed_for_good: bool = False,
) -> TrialRecord:
    """A trial's record from Tune's `result`. `failed_for_good`: Tune's callbacks saw it fail with
    no retry left, whether or not Ray could upload its error."""
    epochs = plan.total_epochs
    history = []
    frame = result.metrics_dataframe
    if frame is not None and len(frame):
        keep = [
            c
            for c in frame.columns
            if c == "epoch" or c.startswith(HISTORY_PREFIXES) and c != BEST_CHECKPOINT
        ]
        rows = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame[keep].to_dict("records")
        ]
        # A resumed trial repeats the epochs after its last checkpoint: keep each epoch's latest
        # row.
        history = list({row.get("epoch"): row for row in rows}.values())
    last = result.metrics or {}
    trial_id = _trial_id(result)
    done = int(last.get("epoch") or 0)
    # The best kept in storage is what gets registered, so it is what the trial counts by. It is the
    # best of Tune's last result, or of an epoch a stopped trial's workers finished while the stop
    # reached them (a worker reports into a queue of one and goes on: it can be an epoch or two
    # ahead of Tune).
    run_name = trial_run_name(plan.name, trial_id)
    kept = read_best(trials, run_name)
    error = tail(result.error) or (LOST_ERROR if failed_for_good else None)
    status, note = _ending(
        error,
        last,
        done,
        epochs,
        trial_id,
        guard,
        trained=max(done, kept.epoch if kept else 0),
    )
    value, best_epoch = (
        (kept.value, kept.epoch)
        if kept
        else (last.get(best_key(plan.search.metric)), last.get(BEST_EPOCH))
    )
    return TrialRecord(
        trial_id=trial_id,
        params=without_task(result.config or guard.configs.get(trial_id, {})),
        status=status,
        metric=float(value) if value is not None and not math.isnan(value) else None,
        epochs=done,
        history=history,
        checkpoint=last.get("checkpoint_path"),
        error=error,
        best_epoch=best_epoch,
        metric_ci=_interval(kept, history, plan.search.metric, best_epoch),
        best_checkpoint=trials.run_uri(run_name, BEST_DIR) if kept else None,
        baseline=trial_id == baseline_id,
        note=note,
        lineage=pbt.lineage_of(last),
    )


def _interval(kept, history: list[dict], metric: str, epoch) -> list[float] | None:
    """The best value's 95 % interval: kept with it, else from its epoch's row."""
    if kept is not None and kept.ci is not None:
        return list(kept.ci)
    row = next((r for r in history if r.get("epoch") == epoch), {})
    low, high = (row.get(key) for key in ci_keys(metric))
    return [low, high] if low is not None and high is not None else None


def _ending(
    error, last: dict, done: int, epochs: int, trial_id: str, guard: SweepGuard, trained: int
) -> tuple[str, str | None]:
    """A trial's status and, when it did not simply finish, how it ended. `done`: the epochs Tune
    saw; `trained`: those and any the workers finished (and kept) while a stop reached them."""
    if error:
        return "failed", None
    status, how = ending(last, done, epochs)
    if status == "finished":
        return status, None
    if (
        status == "stopped" and trial_id not in guard.completed and guard.stop_reason
    ):  # the guard's stop_all, not one by one
        return "stopped", (
            f"stopped after {trained} epoch(s): " if trained else "stopped before its first epoch: "
        ) + guard.stop_reason
    return status, how


def task_results(
    grid,
    plans: list[TaskPlan],
    ctx: SweepContext,
    guards: TaskGuards,
    board,
    searches_ended: dict[str, str],
) -> list[TaskResult]:
    """One TaskResult per plan from the run's results.

    Args:
        grid: Tune's ResultGrid of the run.
        plans: the tasks swept.
        ctx: the run's storage (each trial's kept best is read from it).
        guards: each task's guard (the trials' configs in order, why a task stopped).
        board: the progress actor, told which tasks stopped.
        searches_ended: the tasks whose search gave up early, and why
            (orchestrator.sweep.unique).
    """
    # Tune's results hold a trial's config only once it reported: the guards saw every trial's task.
    results = by_task(
        grid,
        [plan.name for plan in plans],
        lambda result: task_of(result) or guards.tasks.get(_trial_id(result)),
    )
    trials = parse_storage(ctx.trials_storage)
    return [
        _task_result(
            plan,
            results[plan.name],
            guards.guards[plan.name],
            board,
            trials,
            searches_ended.get(plan.name),
        )
        for plan in plans
    ]


def _task_result(
    plan: TaskPlan,
    results: list,
    guard: SweepGuard,
    board,
    trials: Storage,
    search_ended: str | None = None,
) -> TaskResult:
    # Tune's results hold a trial's config only once it reported: the guard saw every trial's, in
    # order.
    baseline_id = baseline_trial(guard.configs.items(), plan.baseline)
    failed = failed_for_good(board, plan.name)
    records = [
        _record(result, plan, baseline_id, guard, trials, _trial_id(result) in failed)
        for result in results
    ]
    for t in (
        records
    ):  # the trials the guard's stop ended got no line of their own from Tune's callbacks
        if t.trial_id not in guard.completed and t.note:
            board.update.remote(plan.name, t.trial_id, t.status, None, t.note)
    stopped = guard.stop_reason or search_ended
    if stopped:  # trials never created are not pending any more
        board.stop.remote(plan.name, stopped)
    mode, configurations, constraints = plan.search.resolved_mode, None, None
    eligible = records
    if plan.search.constraints:  # only the trials that meet them are ranked (sweep.constraints)
        baseline = next((t for t in records if t.trial_id == baseline_id), None)
        unranked = {
            t.trial_id: why
            for t in records
            if (why := broken(t, plan.search.constraints, baseline))
        }
        eligible = [t for t in records if t.trial_id not in unranked]
        constraints = {
            "unranked": unranked,
            "unchecked": unchecked(plan.search.constraints, baseline),
        }
    best = pick_best(eligible, mode)
    if plan.search.repeats > 1:  # configurations by their seeds' mean (orchestrator.sweep.seeds)
        configurations, best = best_configuration(ranked(eligible), mode)
    return TaskResult(
        plan.name,
        plan.data,
        plan.search.metric,
        plan.search.resolved_mode,
        records,
        best.trial_id if best else None,
        baseline_trial_id=baseline_id,
        stopped=stopped,
        repeats=plan.search.repeats,
        configurations=configurations,
        constraints=constraints,
    )


def failed_for_good(board, task: str) -> set[str]:
    """The trials of `task` whose last news on the progress board (Tune's callbacks) is a failure
    with no retry left."""
    trials = ray.get(board.snapshot.remote()).get(task, {}).get("trials", {})
    return {trial for trial, status in trials.items() if status == "failed"}


def _trial_id(result) -> str:
    return str((result.metrics or {}).get("trial_id") or Path(result.path).name)


def tail(error: BaseException | None, limit: int = 1500) -> str | None:
    """The end of an error's text: where Ray's wrapped tracebacks say what went wrong."""
    return str(error)[-limit:] if error else None
