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
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from ray import tune

import orchestrator.search.build as tune_search
from orchestrator import ray_internals
from orchestrator.config.plan import LoadedManifest, TaskPlan
from orchestrator.redact import is_secret_name, restored_environ
from orchestrator.search.guards import TaskGuards
from orchestrator.storage.location import parse_storage
from orchestrator.sweep.placement import concurrency_limit, trial_placement
from orchestrator.sweep.progress import ProgressBoard, ProgressCallback, follow
from orchestrator.sweep.records import tail, task_results
from orchestrator.sweep.result_logs import result_loggers
from orchestrator.sweep.results import TaskResult, TrialRecord
from orchestrator.sweep.router import (
    TASK_KEY,
    TaskCallbacks,
    TaskScheduler,
    TaskSearch,
    TaskSearchSpec,
)
from orchestrator.sweep.unique import ended_early
from orchestrator.trial.trainable import SweepContext, run_trial


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
            unique=None if plan.distinct is None else plan.configurations,
            repeats=plan.search.repeats,
            seed=plan.base.seed,
        )
        schedulers[plan.name] = tune_search.scheduler(plan, epochs)
        metrics[plan.name] = (tune_search.tune_metric(plan), plan.search.resolved_mode)
    search = TaskSearch(specs, max_concurrent=limit, stops=guards)
    return search, TaskScheduler(schedulers, search, metrics, stops=guards)


def _tuner(
    plans: list[TaskPlan], ctx: SweepContext, limit: int, guards: TaskGuards, callbacks: list
) -> tuple[tune.Tuner, TaskSearch]:
    """A new Tune run of `plans`, or the saved one of the same selection when resuming, and its
    search algorithm (the one the run uses)."""
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
        return tuner, tune_config.search_alg
    search, scheduler = _task_search(plans, limit, guards)
    tuner = tune.Tuner(
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
    return tuner, search


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
    tuner, search = _tuner(plans, ctx, limit, guards, [progress, guards])
    outcome: dict[str, Any] = {}

    def sweep() -> None:
        try:
            grid = tuner.fit()
        except Exception as err:  # the run itself failed: every task gets a failed record
            failed = TrialRecord("-", {}, "failed", None, 0, [], None, error=tail(err))
            outcome["results"] = [
                TaskResult(p.name, p.data, p.search.metric, p.search.resolved_mode, [failed], None)
                for p in plans
            ]
            return
        # Still in this thread: the board hears the last updates before the progress shows its last
        # state.
        try:
            outcome["results"] = task_results(
                grid, plans, ctx, guards, board, ended_early(search.inner)
            )
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
