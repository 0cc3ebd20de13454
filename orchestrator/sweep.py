"""Sweep every task of a manifest with Ray Tune; every trial is a Ray Train DDP run.

Per task, a Tune driver runs as a Ray task on the cluster (so tasks sweep
concurrently while there is room, and ASHA only ever compares trials of the same
task). Each trial is a function trainable that builds a TorchTrainer named after the
task and the trial id, so a retried or resumed trial continues from its last
checkpoint instead of starting over.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune

from . import search as tune_search
from .manifest import LoadedManifest, TaskPlan
from .progress import ProgressBoard, ProgressCallback, follow
from .redact import is_secret_name, mask_text


@dataclass
class SweepContext:
    """What every trial of a run needs to know, beyond its own task."""
    experiment: str
    storage: str
    resume: bool = False
    tracking: dict = field(default_factory=dict)   # filled by the tracking layer (MLflow ids)


@dataclass
class TrialRecord:
    trial_id: str
    params: dict[str, Any]
    status: str                       # finished | stopped (early, by the scheduler) | failed
    metric: float | None
    epochs: int
    history: list[dict]
    checkpoint: str | None
    error: str | None = None


@dataclass
class TaskResult:
    task: str
    data: str
    metric: str
    mode: str
    trials: list[TrialRecord]
    best_trial_id: str | None
    registry: dict | None = None

    @property
    def best(self) -> TrialRecord | None:
        return next((t for t in self.trials if t.trial_id == self.best_trial_id), None)

    def first_error(self) -> str | None:
        """The last line of the first failed trial's error: where Ray's wrapped tracebacks say what went wrong."""
        error = next((t.error for t in self.trials if t.error), None)
        lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
        return mask_text(lines[-1])[:300] if lines else None


def total_epochs(plan: TaskPlan) -> int:
    from cyclegan.config import TrainConfig

    return plan.train.get("n_epochs", TrainConfig.n_epochs) + plan.train.get("n_epochs_decay", TrainConfig.n_epochs_decay)


def trial_train_config(plan: TaskPlan, sampled: dict[str, Any], trial_id: str) -> dict[str, Any]:
    """The full set of training options of one trial (TrainConfig fields)."""
    values = plan.trial_config(sampled)
    values.update(tune_search.evaluation_options(plan))
    values.update(dataroot=plan.data, name=f"{plan.name}-{trial_id}")
    return values


def run_trial(config: dict[str, Any], plan: TaskPlan, ctx: SweepContext) -> None:
    """The Tune function trainable: one Ray Train run, reporting every epoch to Tune."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from .train import run_training

    trial_id = tune.get_context().get_trial_id()
    train_config = trial_train_config(plan, config, trial_id)
    # Worker failures fail the trial; Tune retries it (FailureConfig) and the TorchTrainer, relaunched
    # under the same name and storage, continues from the trial's last checkpoint.
    run_training(train_config, plan.resources, storage=f"{ctx.storage.rstrip('/')}/{ctx.experiment}/trials",
                 name=f"{plan.name}-{trial_id}", callbacks=[TuneReportCallback()], max_failures=0,
                 tracking={**ctx.tracking[plan.name], "trial": trial_id} if plan.name in ctx.tracking else None)


def _record(result, plan: TaskPlan, epochs: int) -> TrialRecord:
    metric = plan.search.metric
    history = []
    frame = result.metrics_dataframe
    if frame is not None and len(frame):
        keep = [c for c in frame.columns if c == "epoch" or c.startswith(("loss_", "cycle_l1", "pairs_per_s", "fid", "kid", "psnr", "ssim", "l1"))]
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in frame[keep].to_dict("records")]
        # A resumed trial repeats the epochs after its last checkpoint: keep each epoch's latest row.
        history = list({row.get("epoch"): row for row in rows}.values())
    last = result.metrics or {}
    value = last.get(metric)
    done = last.get("epoch", 0)
    status = "failed" if result.error else ("finished" if done >= epochs else "stopped")
    params = {k: v for k, v in (result.config or {}).items()}
    return TrialRecord(trial_id=str(last.get("trial_id") or Path(result.path).name), params=params, status=status,
                       metric=float(value) if value is not None else None, epochs=int(done), history=history,
                       checkpoint=last.get("checkpoint_path"), error=_tail(result.error))


def pick_best(trials: list[TrialRecord], mode: str) -> TrialRecord | None:
    """The trial with the best final metric among those that produced one."""
    scored = [t for t in trials if t.status != "failed" and t.metric is not None and not math.isnan(t.metric)]
    if not scored:
        return None
    return (min if mode == "min" else max)(scored, key=lambda t: t.metric)


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
    from .storage import parse_storage

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
    callbacks = [ProgressCallback(board_name, plan.name, plan.search.metric, epochs)]
    ray.get_actor(board_name).register.remote(plan.name, plan.search.metric, plan.search.resolved_mode, plan.trial_count)
    if ctx.resume and tune.Tuner.can_restore(f"{tune_root}/{plan.name}", storage_filesystem=storage.filesystem):
        tuner = tune.Tuner.restore(f"{tune_root}/{plan.name}", trainable, resume_errored=True,
                                   storage_filesystem=storage.filesystem)
        # The saved run config holds the previous run's callbacks (and its dead progress actor).
        tuner._local_tuner.get_run_config().callbacks = callbacks
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=tune_search.param_space(plan),
            tune_config=tune.TuneConfig(
                metric=plan.search.metric, mode=plan.search.resolved_mode, num_samples=plan.search.num_samples,
                search_alg=tune_search.search_algorithm(plan), scheduler=tune_search.scheduler(plan, epochs),
                max_concurrent_trials=plan.search.max_concurrent_trials,
                trial_dirname_creator=lambda trial: trial.trial_id),
            run_config=tune.RunConfig(name=plan.name, storage_path=tune_root, storage_filesystem=storage.filesystem,
                                      failure_config=tune.FailureConfig(max_failures=plan.search.max_failures),
                                      callbacks=callbacks, verbose=0),
        )
    grid = tuner.fit()
    trials = [_record(result, plan, epochs) for result in grid]
    best = pick_best(trials, plan.search.resolved_mode)
    return TaskResult(plan.name, plan.data, plan.search.metric, plan.search.resolved_mode, trials,
                      best.trial_id if best else None)


def run_sweeps(loaded: LoadedManifest, plans: list[TaskPlan], ctx: SweepContext, echo=print) -> list[TaskResult]:
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


def write_results(results: list[TaskResult], loaded: LoadedManifest, ctx: SweepContext, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"experiment": ctx.experiment, "manifest": str(loaded.path), "manifest_sha256": loaded.sha256,
               "storage": ctx.storage, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "tasks": [{**asdict(r), "best_trial": r.best_trial_id} for r in results]}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def summary_table(results: list[TaskResult]) -> str:
    rows = [("task", "best trial", "metric", "hyperparameters", "trials", "checkpoint")]
    for r in results:
        counts: dict[str, int] = {}
        for t in r.trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        trials = ", ".join(f"{n} {s}" for s, n in counts.items())
        best = r.best
        if best is None:
            rows.append((r.task, "-", f"{r.metric}: no successful trial", "-", trials, "-"))
            continue
        params = " ".join(f"{k}={_short(v)}" for k, v in best.params.items())
        rows.append((r.task, best.trial_id, f"{r.metric}={best.metric:.4g} ({r.mode})", params or "-", trials, best.checkpoint or "-"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _tail(error: BaseException | None, limit: int = 1500) -> str | None:
    """The end of an error's text: where Ray's wrapped tracebacks say what went wrong."""
    return str(error)[-limit:] if error else None


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
