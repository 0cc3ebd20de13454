"""Sweep every task of a manifest with Ray Tune; every trial is a Ray Train DDP run.

Per task, a Tune driver runs as a Ray task on the cluster (so tasks sweep
concurrently while there is room, and ASHA only ever compares trials of the same
task). Each trial is a function trainable that builds a TorchTrainer named after the
task and the trial id, so a retried or resumed trial continues from its last
checkpoint instead of starting over. Trials count by their best epoch (orchestrator.best),
the paper's baseline runs first (orchestrator.baseline), and the guard rails
(orchestrator.guards) stop diverged trials and sweeps over their budget.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune

from cyclegan.metric_names import EPOCH_METRICS, EVAL_METRICS

from . import search as tune_search
from .baseline import baseline_trial
from .best import BEST_CHECKPOINT, BEST_DIR, BEST_EPOCH, Ranking, best_key, read_best
from .guards import DIVERGED, SweepGuard
from .manifest import TaskPlan
from .progress import ProgressBoard, ProgressCallback, follow
from .redact import is_secret_name
from .results import TaskResult, TrialRecord, pick_best
from .storage import Storage, parse_storage


@dataclass
class SweepContext:
    """What every trial of a run needs to know, beyond its own task."""
    experiment: str
    storage: str
    resume: bool = False
    tracking: dict = field(default_factory=dict)   # filled by the tracking layer (MLflow ids)


def total_epochs(plan: TaskPlan) -> int:
    from cyclegan.config import TrainConfig

    return plan.train.get("n_epochs", TrainConfig.n_epochs) + plan.train.get("n_epochs_decay", TrainConfig.n_epochs_decay)


def trial_train_config(plan: TaskPlan, sampled: dict[str, Any], trial_id: str) -> dict[str, Any]:
    """The full set of training options of one trial (TrainConfig fields)."""
    values = plan.trial_config(sampled)
    values.update(tune_search.evaluation_options(plan))
    values.update(dataroot=plan.data, name=trial_run_name(plan, trial_id))
    return values


def trials_storage(ctx: SweepContext) -> str:
    """Where the trials' Ray Train runs live: one folder per trial, named by `trial_run_name`."""
    return f"{ctx.storage.rstrip('/')}/{ctx.experiment}/trials"


def trial_run_name(plan: TaskPlan, trial_id: str) -> str:
    return f"{plan.name}-{trial_id}"


def run_trial(config: dict[str, Any], plan: TaskPlan, ctx: SweepContext) -> None:
    """The Tune function trainable: one Ray Train run, reporting every epoch to Tune."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from .train import train_on_ray

    trial_id = tune.get_context().get_trial_id()
    train_config = trial_train_config(plan, config, trial_id)
    # Worker failures fail the trial; Tune retries it (FailureConfig) and the TorchTrainer, relaunched
    # under the same name and storage, continues from the trial's last checkpoint.
    train_on_ray(train_config, plan.resources, storage=trials_storage(ctx), name=trial_run_name(plan, trial_id),
                 callbacks=[TuneReportCallback()], max_failures=0, ranking=Ranking(plan.search.metric, plan.search.resolved_mode),
                 tracking={**ctx.tracking[plan.name], "trial": trial_id} if plan.name in ctx.tracking else None)


# What a trial's history (results file) keeps of each epoch: losses, the metrics that can rank trials, speed, the best so far.
HISTORY_PREFIXES = ("loss_", *EPOCH_METRICS, *EVAL_METRICS, "pairs_per_s", "best_")


def _record(result, plan: TaskPlan, epochs: int, baseline_id: str | None, guard: SweepGuard, trials: Storage) -> TrialRecord:
    history = []
    frame = result.metrics_dataframe
    if frame is not None and len(frame):
        keep = [c for c in frame.columns if c == "epoch" or c.startswith(HISTORY_PREFIXES) and c != BEST_CHECKPOINT]
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in frame[keep].to_dict("records")]
        # A resumed trial repeats the epochs after its last checkpoint: keep each epoch's latest row.
        history = list({row.get("epoch"): row for row in rows}.values())
    last = result.metrics or {}
    trial_id = _trial_id(result)
    done = int(last.get("epoch") or 0)
    status, note = _ending(result.error, last, done, epochs, trial_id, guard)
    # The best kept in storage is what gets registered, so it is what the trial counts by. It is the best
    # of Tune's last result, or of an epoch a stopped trial's workers finished while the stop reached them
    # (a worker reports into a queue of one and goes on: it can be an epoch or two ahead of Tune).
    run_name = trial_run_name(plan, trial_id)
    kept = read_best(trials, run_name)
    value, best_epoch = (kept.value, kept.epoch) if kept else (last.get(best_key(plan.search.metric)), last.get(BEST_EPOCH))
    return TrialRecord(trial_id=trial_id, params=dict(result.config or guard.configs.get(trial_id, {})), status=status,
                       metric=float(value) if value is not None and not math.isnan(value) else None, epochs=done, history=history,
                       checkpoint=last.get("checkpoint_path"), error=_tail(result.error), best_epoch=best_epoch,
                       best_checkpoint=trials.run_uri(run_name, BEST_DIR) if kept else None, baseline=trial_id == baseline_id,
                       note=note)


def _ending(error, last: dict, done: int, epochs: int, trial_id: str, guard: SweepGuard) -> tuple[str, str | None]:
    """A trial's status and, when it did not simply finish, how it ended."""
    if error:
        return "failed", None
    if last.get(DIVERGED):
        return "diverged", f"diverged {last[DIVERGED]}"
    if done >= epochs:
        return "finished", None
    if trial_id not in guard.completed and guard.stop_reason:  # ended by the guard's stop_all, not one by one
        return "stopped", (f"stopped after {done} epoch(s): " if done else "stopped before its first epoch: ") + guard.stop_reason
    return "stopped", f"stopped early by the scheduler after {done} epoch(s)"


def keep_credentials_out_of_trial_envs() -> None:
    """Ray Tune copies the driver's AWS_* credentials into every trial's runtime env
    (ray/tune/execution/class_cache.py), and Ray writes runtime envs in plain text to its
    runtime_env_agent.log. The trial processes do not need the copy: they inherit the node's
    environment (a private local Ray: the driver's) or use the node's own credentials."""
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE.difference_update(
        {name for name in class_cache.ENV_VARS_TO_PROPAGATE if is_secret_name(name)})


def sweep_task(plan: TaskPlan, ctx: SweepContext, board_name: str) -> TaskResult:
    """Run (or resume) one task's Tune experiment; runs inside a Ray task."""
    keep_credentials_out_of_trial_envs()
    epochs = total_epochs(plan)

    def trial(config: dict[str, Any]) -> None:
        run_trial(config, plan, ctx)

    # Tune registers trainables cluster-wide by name: each task's needs its own.
    trial.__name__ = trial.__qualname__ = f"cyclegan_{ctx.experiment}_{plan.name}"
    # The trial function only drives its Train workers, which hold the real resources; Tune
    # refuses a zero request, so it asks for a sliver.
    trainable = tune.with_resources(trial, {"cpu": 0.01})
    storage = parse_storage(ctx.storage)
    tune_root = f"{storage.path.rstrip('/')}/{ctx.experiment}/tune"
    guard = tune_search.guard(plan)
    board = ray.get_actor(board_name)
    callbacks = [ProgressCallback(board_name, plan.name, plan.search.metric, epochs, plan.baseline), guard]
    board.register.remote(plan.name, plan.search.metric, plan.search.resolved_mode, plan.trial_count)
    if ctx.resume and tune.Tuner.can_restore(f"{tune_root}/{plan.name}", storage_filesystem=storage.filesystem):
        tuner = tune.Tuner.restore(f"{tune_root}/{plan.name}", trainable, resume_errored=True,
                                   storage_filesystem=storage.filesystem)
        # The saved run config holds the previous run's callbacks (and its dead progress actor) and guard.
        run_config = tuner._local_tuner.get_run_config()
        run_config.callbacks, run_config.stop = callbacks, guard
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=tune_search.param_space(plan),
            tune_config=tune.TuneConfig(
                metric=tune_search.tune_metric(plan), mode=plan.search.resolved_mode, num_samples=tune_search.tune_num_samples(plan),
                search_alg=tune_search.search_algorithm(plan, epochs), scheduler=tune_search.scheduler(plan, epochs),
                max_concurrent_trials=plan.search.max_concurrent_trials,
                trial_dirname_creator=lambda trial: trial.trial_id),
            run_config=tune.RunConfig(name=plan.name, storage_path=tune_root, storage_filesystem=storage.filesystem,
                                      failure_config=tune.FailureConfig(max_failures=plan.search.max_failures),
                                      stop=guard, callbacks=callbacks, verbose=0),
        )
    grid = tuner.fit()
    # Tune's results hold a trial's config only once it reported: the guard saw every trial's, in order.
    baseline_id = baseline_trial(guard.configs.items(), plan.baseline)
    trials = [_record(result, plan, epochs, baseline_id, guard, parse_storage(trials_storage(ctx))) for result in grid]
    for t in trials:  # the trials the guard's stop_all ended got no line of their own from Tune's callbacks
        if t.trial_id not in guard.completed and t.note:
            board.update.remote(plan.name, t.trial_id, t.status, None, t.note)
    if guard.stop_reason:  # trials never created are not pending any more
        board.stop.remote(plan.name, guard.stop_reason)
    best = pick_best(trials, plan.search.resolved_mode)
    return TaskResult(plan.name, plan.data, plan.search.metric, plan.search.resolved_mode, trials,
                      best.trial_id if best else None, baseline_trial_id=baseline_id, stopped=guard.stop_reason)


def _trial_id(result) -> str:
    return str((result.metrics or {}).get("trial_id") or Path(result.path).name)


def run_sweeps(plans: list[TaskPlan], ctx: SweepContext, echo=print) -> list[TaskResult]:
    """Sweep the tasks concurrently (one remote Tune driver each) and print progress."""
    board_name = f"cyclegan-progress-{uuid.uuid4().hex[:12]}"
    board = ProgressBoard.options(name=board_name).remote()
    remote_sweep = ray.remote(num_cpus=0, max_retries=0)(sweep_task)
    futures = {plan.name: remote_sweep.remote(plan, ctx, board_name) for plan in plans}
    pending = list(futures.values())

    def wait_done(timeout: float) -> bool:
        nonlocal pending
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=timeout)
        return not pending

    follow(board, wait_done, echo=echo)
    results = []
    for name, future in futures.items():
        try:
            results.append(ray.get(future))
        except Exception as err:  # the task's Tune driver itself failed
            plan = next(p for p in plans if p.name == name)
            results.append(TaskResult(name, plan.data, plan.search.metric, plan.search.resolved_mode,
                                      [TrialRecord("-", {}, "failed", None, 0, [], None, error=_tail(err))], None))
    return results


def _tail(error: BaseException | None, limit: int = 1500) -> str | None:
    """The end of an error's text: where Ray's wrapped tracebacks say what went wrong."""
    return str(error)[-limit:] if error else None
