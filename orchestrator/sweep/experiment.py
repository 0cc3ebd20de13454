"""The main job: storage and tracking checks, Ray, the sweeps, the registry, the summary."""

from __future__ import annotations

import json
import logging
import signal
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import orchestrator.tracking.runs as tracking
from cyclegan.errors import UserError
from orchestrator.config.aliases import alias_note, expand_aliases
from orchestrator.config.options import train_options
from orchestrator.config.plan import LoadedManifest, TaskPlan
from orchestrator.config.schema import Tracking
from orchestrator.redact import mask_text
from orchestrator.runtime import (
    connect,
    driver_runtime_env,
    has_autoscaler,
    ray_logs_dir,
    shutdown_quietly,
)
from orchestrator.storage.checkpoints import read_bytes, write_bytes
from orchestrator.storage.location import (
    Storage,
    parse_storage,
    trial_run_name,
    validate_storage,
    without_userinfo,
)
from orchestrator.sweep.delivery import deliver_champions, delivery_line
from orchestrator.sweep.options import RunOptions
from orchestrator.sweep.placement import check_cluster_fits
from orchestrator.sweep.results import TaskResult, summary_table, write_results
from orchestrator.sweep.tuner import run_sweeps
from orchestrator.tracking.context import TrackingContext
from orchestrator.tracking.recorder import BEST_EPOCH_TAG
from orchestrator.tracking.server import resolve_tracking_uri, runs_page
from orchestrator.trial.trainable import SweepContext

log = logging.getLogger(__name__)

# A trial's MLflow run status; its `cyclegan.status` tag tells diverged from failed.
TRIAL_RUN_STATUS = {
    "finished": "FINISHED",
    "stopped": "KILLED",
    "diverged": "FAILED",
    "failed": "FAILED",
}


class Stopped(KeyboardInterrupt):
    """The driver was told to stop (SIGTERM from `ray job stop`, or Ctrl-C)."""


def _stop(signum, frame):
    raise Stopped()


def _sweep_token(target: Storage, experiment: str, resume: bool) -> str:
    """An id for this sweep, kept in storage so that `--resume` reopens the same MLflow parent
    runs."""
    fs = target.filesystem
    path = f"{target.path.rstrip('/')}/{experiment}/sweep.json"
    if fs is None:
        from pyarrow import fs as pafs

        fs = pafs.LocalFileSystem()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    if resume:
        try:
            return json.loads(read_bytes(fs, path))["token"]
        except (FileNotFoundError, OSError, KeyError, ValueError):
            log.warning(
                "no earlier sweep of %s found in the storage: starting a new one", experiment
            )
    token = uuid.uuid4().hex[:12]
    write_bytes(fs, path, json.dumps({"token": token}).encode())
    return token


def _start_tracking(
    loaded: LoadedManifest, plans: list[TaskPlan], token: str
) -> dict[str, TrackingContext]:
    """Check MLflow, then open one parent run per task; returns what the trials need."""
    manifest = loaded.manifest
    specs = [
        tracking.TaskRunSpec(
            plan.name,
            dataset=plan.data,
            manifest_name=manifest.name,
            manifest_sha256=loaded.sha256,
            metric=plan.search.metric,
            mode=plan.search.resolved_mode,
            sweep_key=f"{manifest.name}/{plan.name}/{token}",
            # Hyperparameters by their TrainConfig names, as the trials' runs and the registry
            # record them.
            params={
                "search": plan.search.model_dump(exclude={"space"}),
                "space": expand_aliases(plan.space),
                "train": plan.train,
                "resources": plan.resources.model_dump(),
            },
            tags={tracking.SEARCHED_AS_TAG: alias_note(plan.space)},
        )
        for plan in plans
    ]
    return tracking.open_task_runs(
        resolve_tracking_uri(manifest.tracking.uri),
        manifest.tracking.experiment or manifest.name,
        specs,
        loaded.path,
        manifest.tracking.system_metrics,
    )


def _finish_task(
    result: TaskResult,
    plan: TaskPlan,
    spec: TrackingContext,
    tracking_opts: Tracking,
    trials: Storage,
) -> None:
    """Close the trial runs, weigh the best trial's best epoch (against the untranslated inputs and
    the baseline), register it (the promotion rule decides the champion), record the outcome and
    close the parent run."""
    from orchestrator.storage.best import fetch_best
    from orchestrator.sweep.verdict import champion_reevaluator, weigh
    from orchestrator.tracking.registry import Candidate, register_best

    uri, parent = spec.uri, spec.parent_run_id
    for trial in result.trials:
        if trial.trial_id != "-":
            tags = {
                tracking.STATUS_TAG: trial.status,
                tracking.BASELINE_TAG: str(trial.baseline).lower(),
                tracking.NOTE_TAG: trial.note,
                BEST_EPOCH_TAG: trial.best_epoch,
            }
            tracking.set_trial_status(
                uri, parent, trial.trial_id, TRIAL_RUN_STATUS[trial.status], tags
            )
    rows = [_table_row(result, t) for t in result.trials if t.trial_id != "-"]
    tracking.log_trials_table(uri, parent, rows)
    best = result.best
    hyperparameters = train_options(best.params) if best else {}  # the names the trial's run has
    summary = f"no successful trial: nothing registered for {result.task}"
    with tempfile.TemporaryDirectory(prefix="cyclegan-best-") as tmp:
        # The best epoch's generators and evidence from storage (S3 too), else the ones logged to
        # the trial's run.
        fetched = (
            fetch_best(trials, trial_run_name(plan.name, best.trial_id), Path(tmp) / "best")
            if best
            else None
        )
        folder, kept = fetched if fetched else (None, None)
        weigh(result, folder, trials, Path(tmp))
        _record_outcome(result, uri, parent, hyperparameters)
        if best is not None:
            value, epoch = (kept.value, kept.epoch) if kept else (best.metric, best.best_epoch)
            candidate = Candidate(
                result.task,
                tracking.find_trial_run(uri, parent, best.trial_id),
                metric=result.metric,
                value=value,
                mode=result.mode,
                hyperparameters=hyperparameters,
                dataset=result.data,
                step=epoch or 0,
                checkpoint_dir=folder,
                tags={
                    "epoch": epoch,
                    "baseline": str(best.baseline).lower(),
                    tracking.SEARCHED_AS_TAG: alias_note(best.params),
                },
            )
            name = f"{tracking_opts.registry_prefix}{result.task}"
            try:
                registration = register_best(
                    uri,
                    candidate,
                    tracking_opts.registry_prefix,
                    promote=tracking_opts.promote,
                    reevaluate=champion_reevaluator(uri, name, folder) if folder else None,
                )
                result.registry = {
                    "name": registration.name,
                    "version": registration.version,
                    "champion": registration.champion,
                    "champion_version": registration.version
                    if registration.champion
                    else registration.previous_champion,
                    "model_uri": registration.model_uri,
                    "summary": registration.summary(),
                }
                summary = registration.summary()
            except (UserError, OSError) as err:  # MLflow's come as TrackingError
                summary = f"registration failed: {mask_text(str(err))[:300]}"
                result.registry = {"error": summary}
    tracking.end_task_run(uri, parent, "FINISHED" if best else "FAILED", summary=summary)


def _table_row(result: TaskResult, trial) -> dict:
    """A trial as a row of its task's table in MLflow: how it ended, its hyperparameters, its best
    value with its interval."""
    low, high = trial.metric_ci or (None, None)
    return {
        "trial": trial.trial_id,
        "status": trial.status,
        "baseline": trial.baseline,
        **train_options(trial.params),
        result.metric: trial.metric,
        f"{result.metric}_ci_low": low,
        f"{result.metric}_ci_high": high,
        "best_epoch": trial.best_epoch,
        "epochs": trial.epochs,
    }


def _record_outcome(result: TaskResult, uri: str, parent: str, hyperparameters: dict) -> None:
    """The task's run: the best value with its interval, the baseline's and the untranslated
    inputs' (the reference), and the best hyperparameters."""
    from orchestrator.storage.best import best_key

    best, metric = result.best, result.metric
    reference = result.untranslated or {}
    low, high = (best.metric_ci or (None, None)) if best else (None, None)
    tracking.record_task_outcome(
        uri,
        parent,
        metrics={
            best_key(metric): best.metric if best else None,
            f"{best_key(metric)}_ci_low": low,
            f"{best_key(metric)}_ci_high": high,
            "best_epoch": best.best_epoch if best else None,
            f"baseline_{metric}": result.baseline_value,
            "improvement_over_baseline": result.improvement,
            f"untranslated_{metric}": reference.get("value"),
            f"untranslated_{metric}_ci_low": (reference.get("ci") or (None, None))[0],
            f"untranslated_{metric}_ci_high": (reference.get("ci") or (None, None))[1],
            "improvement_over_untranslated": (result.over_untranslated or (None,))[0],
        },
        tags={
            "cyclegan.best_trial": result.best_trial_id,
            "cyclegan.baseline_trial": result.baseline_trial_id,
            "cyclegan.stopped": result.stopped,
            "protocol": reference.get("protocol"),
            **{f"{tracking.BEST_PREFIX}{k}": v for k, v in hyperparameters.items()},
        },
    )


def _logs_line(log_path: Path | None) -> str | None:
    parts = [f"this run's log: {log_path}"] if log_path else []
    ray_logs = ray_logs_dir()
    if ray_logs:
        parts.append(f"Ray's logs: {ray_logs}")
    return "logs: " + "; ".join(parts) if parts else None


def run_experiment(
    loaded: LoadedManifest,
    plans: list[TaskPlan],
    options: RunOptions,
    echo: Callable[[str], None] = print,
) -> int:
    """Sweep `plans` of the manifest `loaded` as `options` say, register each task's best, print the
    summary through `echo`; returns the exit code. With `options.verbose` off, the Ray workers'
    output stays in Ray's logs (the caller captures this process's own, see
    orchestrator.sweep.console)."""
    experiment = loaded.manifest.name
    target = validate_storage(options.storage)
    token = _sweep_token(target, experiment, options.resume)
    runs = _start_tracking(
        loaded, plans, token
    )  # before anything trains: an unreachable MLflow fails here
    ctx = SweepContext(
        experiment=experiment,
        storage=target.path if target.is_local else without_userinfo(options.storage),
        resume=options.resume,
        tracking=runs,
    )
    previous = signal.signal(signal.SIGTERM, _stop)
    started_here = False
    try:
        started_here = connect(
            options.address, runtime_env=driver_runtime_env(), log_to_driver=options.verbose
        )
        signal.signal(signal.SIGTERM, _stop)  # ray.init installs its own SIGTERM handler (sys.exit)
        can_grow = not started_here and has_autoscaler()
        try:
            check_cluster_fits(plans, can_grow=can_grow, wait_s=options.resource_wait_s, echo=echo)
        except UserError as err:
            for spec in runs.values():
                tracking.end_task_run(
                    spec.uri, spec.parent_run_id, "FAILED", summary=mask_text(str(err))[:2000]
                )
            raise
        echo(
            f"sweeping {len(plans)} task(s) of {experiment}: "
            + ", ".join(f"{p.name} ({p.trial_count} trials)" for p in plans)
        )
        logs = _logs_line(options.log_path)
        if logs:
            echo(logs)
        results = run_sweeps(loaded, plans, ctx, echo=echo, can_grow=can_grow)
        trials = parse_storage(ctx.trials_storage)
        for result, plan in zip(results, plans):
            _finish_task(result, plan, runs[plan.name], loaded.manifest.tracking, trials)
        undelivered = deliver_champions(
            results, plans, runs[plans[0].name].uri, loaded.manifest.tracking.registry_prefix, echo
        )
        if started_here:
            shutdown_quietly()
    except KeyboardInterrupt:
        for spec in runs.values():  # no run is left RUNNING forever
            tracking.end_task_run(
                spec.uri, spec.parent_run_id, "KILLED", summary="the driver was stopped"
            )
        echo(f"stopped: continue with `python -m orchestrator run {loaded.path} --resume`")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    path = write_results(
        results,
        experiment,
        loaded.path,
        loaded.sha256,
        ctx.storage,
        options.results_dir / f"{experiment}.json",
    )
    echo("\n" + summary_table(results))
    for result in results:
        if result.registry and "summary" in result.registry:
            echo(f"registry: {result.registry['summary']}")
        if result.delivery:
            echo(f"delivery: {delivery_line(result)}")
    context = next(iter(runs.values()))
    uri = context.uri
    echo(f"\nresults: {path}")
    if logs:
        echo(logs)
    echo(
        f"look up the champions: python -m orchestrator models list --tracking-uri "
        f"'{mask_text(uri)}'"
    )
    echo(f"the runs in MLflow's UI: {runs_page(uri, context.experiment_id)}")
    failed = [r for r in results if r.best is None]
    for result in failed:
        reason = result.first_error()
        echo(
            f"error: task {result.task}: no successful trial"
            + (f"; first error: {reason}" if reason else "")
        )
    lost = _failed_trials(results, plans)
    if lost:
        echo(
            f"error: {len(lost)} trial(s) failed for good: {', '.join(lost[:10])}; set "
            "search.allow_failed_trials: true in the manifest if a run with failed trials is a "
            "success"
        )
    for task in undelivered:
        echo(
            f"error: task {task}: its delivery is not complete ({path} says why); run again with "
            "--resume to finish it"
        )
    if failed or lost:
        echo(f"the trials' errors are in {path}")
    return 1 if failed or lost or undelivered else 0


def _failed_trials(results: list, plans: list[TaskPlan]) -> list[str]:
    """`task/trial` of each trial that failed for good, in the tasks that do not allow it."""
    allowed = {plan.name for plan in plans if plan.search.allow_failed_trials}
    return [
        f"{result.task}/{trial.trial_id}"
        for result in results
        if result.task not in allowed
        for trial in result.trials
        if trial.status == "failed"
    ]
