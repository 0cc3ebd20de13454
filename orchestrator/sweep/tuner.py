"""Sweep every task of a manifest in one Ray Tune run, in the driver's process.

Every trial's config names its task (`config["task"]`); the run's search algorithm and scheduler
dispatch by it (orchestrator.sweep.router), so each task keeps its own search, sample count, metric
and scheduler, and ASHA only ever compares trials of the same task. A one-worker trial trains in its
own Tune trial process; a trial with several workers drives a Ray Train DDP run
(orchestrator.trial.session). Either way a trial is named after its task and its trial id, so a
retried or resumed trial continues from its last checkpoint instead of starting over. Trials count
by their best epoch (orchestrator.storage.best), the paper's baseline runs first
(orchestrator.config.baseline), and the guard rails (orchestrator.search.guards) stop diverged
trials and tasks over their budget.

Nothing here imports torch: the driver stays small whatever the number of tasks
(docs/PERFORMANCE.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray import tune

import orchestrator.search.build as tune_search
import orchestrator.search.schedulers.pbt as pbt
from cyclegan.metric_names import EPOCH_METRICS, EVAL_METRICS
from cyclegan.scores import ci_keys
from orchestrator import ray_internals
from orchestrator.config.baseline import baseline_trial
from orchestrator.config.plan import LoadedManifest, TaskPlan
from orchestrator.redact import is_secret_name, restored_environ
from orchestrator.search.guards import SweepGuard, TaskGuards
from orchestrator.storage.best import BEST_CHECKPOINT, BEST_DIR, BEST_EPOCH, best_key, read_best
from orchestrator.storage.location import Storage, parse_storage, trial_run_name
from orchestrator.sweep.placement import concurrency_limit, trial_placement
from orchestrator.sweep.progress import ProgressBoard, ProgressCallback, ending, follow
from orchestrator.sweep.result_logs import result_loggers
from orchestrator.sweep.results import TaskResult, TrialRecord, pick_best
from orchestrator.sweep.router import (
    TASK_KEY,
    TaskCallbacks,
    TaskScheduler,
    TaskSearch,
    TaskSearchSpec,
    by_task,
    task_of,
    without_task,
)
from orchestrator.trial.trainable import SweepContext, run_trial

# What a trial's history (results file) keeps of each epoch: losses, the metrics that can rank
# trials, speed, the best so far, and the searched hyperparameters' values that epoch trained with
# (PBT changes them).
HISTORY_PREFIXES = ("loss_", *EPOCH_METRICS, *EVAL_METRICS, "pairs_per_s", "best_", pbt.HP_PREFIX)


def _record(
    result, plan: TaskPlan, epochs: int, baseline_id: str | None, guard: SweepGuard, trials: Storage
) -> TrialRecord:
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
    status, note = _ending(
        result.error,
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
        error=_tail(result.error),
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


def keep_credentials_out_of_trial_envs() -> None:
    """Ray Tune copies the driver's AWS_* credentials into every trial's runtime env
    (ray/tune/execution/class_cache.py), and Ray writes runtime envs in plain text to its
    runtime_env_agent.log. The trial processes do not need the copy: they inherit the node's
    environment (a private local Ray: the driver's) or use the node's own credentials."""
    ray_internals.stop_propagating_env_vars(is_secret_name)


RUN_NAME_LIMIT = 80  # a run named after many tasks gets a hash of their names instead
PROGRESS_BOARD_MEMORY = (
    100 << 20
)  # what the progress actor reserves of its node's memory (it holds a few counters)


def run_name(plans: list[TaskPlan]) -> str:
    """The Tune run's name: the task selection's (one task: its name), so that `--resume` with the
    same selection finds it again, and a sweep of another selection is a run of its own."""
    names = [plan.name for plan in plans]
    joined = "+".join(names)
    if len(joined) <= RUN_NAME_LIMIT:
        return joined
    return f"{len(names)}-tasks-{hashlib.sha1(joined.encode()).hexdigest()[:12]}"


@contextlib.contextmanager
def _tune_environment(max_pending: int) -> Iterator[None]:
    """Tune reads these from the driver's environment while it runs: no automatic loggers (the
    TensorBoard one imports torch; the CSV and JSON ones are passed explicitly), and as many trials
    pending placement at once as may run, not Tune's default of one for a custom search
    algorithm."""
    values = {
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
        "TUNE_MAX_PENDING_TRIALS_PG": str(max_pending),
    }
    with restored_environ(values):
        os.environ.update(values)
        yield


def _task_search(
    plans: list[TaskPlan], limit: int, guards: TaskGuards
) -> tuple[TaskSearch, TaskScheduler]:
    """The dispatching search algorithm and scheduler of the run: each task its own, as a Tuner of
    the task alone had."""
    specs, schedulers, metrics = {}, {}, {}
    for plan in plans:
        epochs = plan.total_epochs
        specs[plan.name] = TaskSearchSpec(
            tune_search.search_algorithm(plan, epochs),
            tune_search.param_space(plan),
            tune_search.tune_num_samples(plan),
            tune_search.tune_metric(plan),
            plan.search.resolved_mode,
            max_concurrent=plan.search.max_concurrent_trials,
            max_failures=plan.search.max_failures,
            unique=None if plan.distinct is None else plan.trial_count,
        )
        schedulers[plan.name] = tune_search.scheduler(plan, epochs)
        metrics[plan.name] = (tune_search.tune_metric(plan), plan.search.resolved_mode)
    search = TaskSearch(specs, max_concurrent=limit, stops=guards)
    return search, TaskScheduler(schedulers, search, metrics, stops=guards)


def _tuner(
    plans: list[TaskPlan], ctx: SweepContext, limit: int, guards: TaskGuards, callbacks: list
) -> tune.Tuner:
    """A new Tune run of `plans`, or the saved one of the same selection when resuming."""
    by_name = {plan.name: plan for plan in plans}

    def trial(config: dict[str, Any]) -> None:
        run_trial(config, by_name, ctx)

    # Tune registers trainables cluster-wide by name.
    trial.__name__ = trial.__qualname__ = f"cyclegan_{ctx.experiment}"
    # What each trial reserves depends on its task (orchestrator.sweep.placement).
    trainable = tune.with_resources(
        trial, lambda config: trial_placement(by_name[config[TASK_KEY]].resources)
    )
    storage = parse_storage(ctx.storage)
    tune_root = f"{storage.path.rstrip('/')}/{ctx.experiment}/tune"
    name = run_name(plans)
    loggers = result_loggers()  # what the results' metrics and a resume read
    if ctx.resume and tune.Tuner.can_restore(
        f"{tune_root}/{name}", storage_filesystem=storage.filesystem
    ):
        tuner = tune.Tuner.restore(
            f"{tune_root}/{name}",
            trainable,
            resume_errored=True,
            storage_filesystem=storage.filesystem,
        )
        # The saved run holds the previous driver's callbacks (and its dead progress actor) and
        # guards.
        run_config, tune_config = ray_internals.restored_configs(tuner)
        run_config.callbacks, run_config.stop = callbacks + loggers, guards
        tune_config.search_alg.stops = tune_config.scheduler.stops = guards
        tune_config.search_alg.max_concurrent = limit
        return tuner
    search, scheduler = _task_search(plans, limit, guards)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=search,
            scheduler=scheduler,
            num_samples=1,
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=tune_root,
            storage_filesystem=storage.filesystem,
            failure_config=tune.FailureConfig(
                max_failures=max(p.search.max_failures for p in plans)
            ),
            stop=guards,
            callbacks=callbacks + loggers,
            verbose=0,
        ),
    )


def run_sweeps(
    loaded: LoadedManifest,
    plans: list[TaskPlan],
    ctx: SweepContext,
    echo=print,
    *,
    can_grow: bool = False,
) -> list[TaskResult]:
    """Sweep the tasks in one Tune run in this process, printing progress; one TaskResult per plan.

    At most the manifest's `max_concurrent_trials` trials run at once across the tasks (default: as
    many as the cluster holds now, orchestrator.sweep.placement), each task within its own limit;
    the rest wait their turn.

    Args:
        loaded: the manifest; plans: its tasks to sweep.
        ctx: what every trial needs beyond its task (storage, tracking).
        echo: prints a line for the user.
        can_grow: the cluster has an autoscaler (more trials may fit later).
    """
    keep_credentials_out_of_trial_envs()
    from orchestrator.runtime import alive_nodes

    limit = concurrency_limit(plans, loaded.manifest.max_concurrent_trials, alive_nodes(), can_grow)
    board_name = f"cyclegan-progress-{uuid.uuid4().hex[:12]}"
    board = ProgressBoard.options(name=board_name, memory=PROGRESS_BOARD_MEMORY).remote()
    for plan in plans:
        board.register.remote(
            plan.name, plan.search.metric, plan.search.resolved_mode, plan.trial_count
        )
    guards = TaskGuards({plan.name: tune_search.guard(plan) for plan in plans})
    progress = TaskCallbacks(
        {
            plan.name: ProgressCallback(
                board_name, plan.name, plan.search.metric, plan.total_epochs, plan.baseline
            )
            for plan in plans
        }
    )
    tuner = _tuner(plans, ctx, limit, guards, [progress, guards])
    outcome: dict[str, Any] = {}

    def sweep() -> None:
        try:
            grid = tuner.fit()
        except Exception as err:  # the run itself failed: every task gets a failed record
            failed = TrialRecord("-", {}, "failed", None, 0, [], None, error=_tail(err))
            outcome["results"] = [
                TaskResult(p.name, p.data, p.search.metric, p.search.resolved_mode, [failed], None)
                for p in plans
            ]
            return
        # Still in this thread: the board hears the last updates before the progress shows its last
        # state.
        try:
            outcome["results"] = _results(grid, plans, ctx, guards, board)
        except BaseException as err:  # raised again in the driver's main thread
            outcome["error"] = err

    with _tune_environment(limit):
        # Tune runs in a thread; this one prints the progress and takes the signals
        # (orchestrator.sweep.experiment).
        runner = threading.Thread(target=sweep, name="tune-run", daemon=True)
        runner.start()
        follow(board, lambda timeout: (runner.join(timeout), not runner.is_alive())[1], echo=echo)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["results"]


def _results(
    grid, plans: list[TaskPlan], ctx: SweepContext, guards: TaskGuards, board
) -> list[TaskResult]:
    """One TaskResult per plan from the run's results."""
    # Tune's results hold a trial's config only once it reported: the guards saw every trial's task.
    results = by_task(
        grid,
        [plan.name for plan in plans],
        lambda result: task_of(result) or guards.tasks.get(_trial_id(result)),
    )
    trials = parse_storage(ctx.trials_storage)
    return [
        _task_result(plan, results[plan.name], guards.guards[plan.name], board, trials)
        for plan in plans
    ]


def _task_result(
    plan: TaskPlan, results: list, guard: SweepGuard, board, trials: Storage
) -> TaskResult:
    epochs = plan.total_epochs
    # Tune's results hold a trial's config only once it reported: the guard saw every trial's, in
    # order.
    baseline_id = baseline_trial(guard.configs.items(), plan.baseline)
    records = [_record(result, plan, epochs, baseline_id, guard, trials) for result in results]
    for t in (
        records
    ):  # the trials the guard's stop ended got no line of their own from Tune's callbacks
        if t.trial_id not in guard.completed and t.note:
            board.update.remote(plan.name, t.trial_id, t.status, None, t.note)
    if guard.stop_reason:  # trials never created are not pending any more
        board.stop.remote(plan.name, guard.stop_reason)
    best = pick_best(records, plan.search.resolved_mode)
    return TaskResult(
        plan.name,
        plan.data,
        plan.search.metric,
        plan.search.resolved_mode,
        records,
        best.trial_id if best else None,
        baseline_trial_id=baseline_id,
        stopped=guard.stop_reason,
    )


def _trial_id(result) -> str:
    return str((result.metrics or {}).get("trial_id") or Path(result.path).name)


def _tail(error: BaseException | None, limit: int = 1500) -> str | None:
    """The end of an error's text: where Ray's wrapped tracebacks say what went wrong."""
    return str(error)[-limit:] if error else None
