"""One CycleGAN training on Ray Train: DDP over N workers, checkpoints in shared storage, retries.

    from orchestrator.trial.ray_train import Resources, train_on_ray
    result = train_on_ray(TrainConfig(dataroot="s3://data/horse2zebra", name="h2z"), Resources(workers=8, gpus_per_worker=1),
                          "s3://runs/cyclegan", max_failures=3)

The driver side only: check the options and the storage before anything starts, start (or
join) Ray, build the `TorchTrainer` (`prepare_run`), run it, and turn worker failures into one
clear error. `python -m orchestrator train` and each trial of a sweep (orchestrator.sweep.tuner) call
`train_on_ray`; what the workers run is `orchestrator.trial.session`.

A run is its `name` in its `storage`: launched again with the same two, it continues from
its last checkpoint (Ray Train restores it), so an interrupted command is simply re-run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train import CheckpointConfig, FailureConfig, RunConfig
from ray.train.torch import TorchTrainer

from cyclegan.config import TrainConfig
from cyclegan.errors import UserError
from cyclegan.run_files import STATE_FILE
from orchestrator.config.resources import DEFAULT_KEEP_CHECKPOINTS, DEFAULT_STORAGE, Resources, prepare_config
from orchestrator.ray_internals import wrapped_error
from orchestrator.runtime import connect
from orchestrator.storage.best import Ranking
from orchestrator.storage.checkpoints import CHECKPOINT_FILES, state_file
from orchestrator.storage.location import Storage, parse_storage, validate_storage
from orchestrator.tracking.context import TrackingContext
from orchestrator.trial.session import WorkerPlan, train_loop_per_worker

log = logging.getLogger(__name__)


class TrainingFailed(UserError):
    """The run stopped on worker failures (after its retries); it can be continued by relaunching."""

    exit_code = 1


@dataclass
class TrainResult:
    name: str
    path: str                        # the run's folder in storage
    metrics: dict[str, Any]          # the last epoch's metrics (losses averaged over the workers)
    checkpoint: ray.train.Checkpoint | None  # the last checkpoint (a folder of cyclegan checkpoint files)
    start_epoch: int                 # the first epoch the final attempt trained (1: from scratch)
    already_complete: bool           # relaunched after the run had finished: nothing was trained
    output_dir: Path                 # sample grids and logs, on rank 0's node
    ray_result: Any = None           # ray.train.Result

    @property
    def checkpoint_path(self) -> str | None:
        return self.metrics.get("checkpoint_path") or (self.checkpoint.path if self.checkpoint else None)


# ------------------------------------------------------------------------------------------------
# Before anything starts


def resume_checkpoint(resume_from: str | None) -> ray.train.Checkpoint | None:
    """A starting checkpoint: a folder holding latest_state.pt (a single-machine run's output
    folder, or a Ray run's checkpoint_epoch_NNNN/), local (readable on every node) or s3://."""
    if not resume_from:
        return None
    target = parse_storage(resume_from)
    if target.is_local:
        folder = state_file(target.path).parent
        return ray.train.Checkpoint(str(folder))
    info = target.filesystem.get_file_info(f"{target.path}/{STATE_FILE}")
    if info.type.name != "File":
        raise UserError(f"--resume-from {target.shown}: no {STATE_FILE} there")
    return ray.train.Checkpoint(target.path, filesystem=target.filesystem)


# ------------------------------------------------------------------------------------------------
# The TorchTrainer


@dataclass
class PreparedRun:
    trainer: TorchTrainer
    cfg: TrainConfig          # as the workers get it (paths absolute, name = the run's name)
    storage: Storage
    output_dir: Path


def prepare_run(config: TrainConfig | dict, scaling: Resources | None = None, storage: str | Storage = DEFAULT_STORAGE, *,
                name: str | None = None, max_failures: int = 0, keep_checkpoints: int = DEFAULT_KEEP_CHECKPOINTS,
                resume_from: str | None = None, callbacks: list | None = None, worker_env: dict[str, str] | None = None,
                tracking: TrackingContext | None = None, output_dir: str | Path | None = None, check_storage: bool = True,
                ranking: Ranking | None = None) -> PreparedRun:
    """Everything `train_on_ray` does before `TorchTrainer.fit()`: the checks, then the trainer."""
    scaling = scaling or Resources()
    cfg = prepare_config(config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config)), scaling, name)
    if max_failures < -1:
        raise UserError(f"--max-failures {max_failures}: use 0 or more (-1: retry forever)")
    if keep_checkpoints < 1:
        raise UserError(f"--keep-checkpoints {keep_checkpoints}: keep at least 1")
    target = storage if isinstance(storage, Storage) else (validate_storage(storage) if check_storage else parse_storage(storage))
    out = Path(output_dir).expanduser().resolve() if output_dir else Path(cfg.checkpoints_dir) / cfg.name
    run_config = RunConfig(
        name=cfg.name, storage_path=target.path, storage_filesystem=target.filesystem,
        failure_config=FailureConfig(max_failures=max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=keep_checkpoints),
        callbacks=list(callbacks or []),
        worker_runtime_env={"env_vars": dict(worker_env)} if worker_env else None,
    )
    plan = WorkerPlan(cfg=cfg, resources=scaling, storage=target, output_dir=out, resume_from=resume_checkpoint(resume_from),
                      tracking=tracking, ranking=ranking)
    trainer = TorchTrainer(train_loop_per_worker, train_loop_config={"plan": plan}, scaling_config=scaling.to_ray(),
                           run_config=run_config)
    return PreparedRun(trainer, cfg, target, out)


def train_on_ray(config: TrainConfig | dict, scaling: Resources | None = None, storage: str | Storage = DEFAULT_STORAGE, *,
                 name: str | None = None, max_failures: int = 0, keep_checkpoints: int = DEFAULT_KEEP_CHECKPOINTS,
                 resume_from: str | None = None, callbacks: list | None = None, worker_env: dict[str, str] | None = None,
                 tracking: TrackingContext | None = None, output_dir: str | Path | None = None, address: str | None = None,
                 ranking: Ranking | None = None) -> TrainResult:
    """Train `config` on `scaling` workers with checkpoints in `storage` (see the module docstring).

    `max_failures`: worker-group failures to recover from (each resumes from the last checkpoint).
    `keep_checkpoints`: how many checkpoints stay in storage (the oldest go).
    `resume_from`: a checkpoint folder to start from when the run has none of its own yet.
    `worker_env`: environment for the workers (e.g. credentials a joined cluster lacks).
    `output_dir`: rank 0's local folder for sample grids and logs (default <checkpoints_dir>/<name>).
    `ranking`: keep the best epoch by this metric in `<storage>/<name>/best/` (orchestrator.storage.best).
    """
    scaling = scaling or Resources()
    run = prepare_run(config, scaling, storage, name=name, max_failures=max_failures, keep_checkpoints=keep_checkpoints,
                      resume_from=resume_from, callbacks=callbacks, worker_env=worker_env, tracking=tracking,
                      output_dir=output_dir, ranking=ranking)
    cfg, target = run.cfg, run.storage
    started_here = connect(address)
    _check_resources(scaling, strict=started_here)
    if target.is_local and len([n for n in ray.nodes() if n.get("Alive")]) > 1:
        log.warning("storage %s is a local path on a multi-node cluster: it must be a folder shared by every node", target.shown)
    log.info("Ray Train run %s: %d worker(s) x batch %d = effective batch %d; checkpoints in %s (the last %d kept)",
             cfg.name, scaling.workers, cfg.batch_size, cfg.batch_size * scaling.workers, target.run_uri(cfg.name), keep_checkpoints)
    try:
        result = run.trainer.fit()
    except ray.train.TrainingFailedError as err:
        raise _failure(err, cfg.name, target) from None
    returned = result.return_value or {}
    metrics = returned.get("metrics") or dict(result.metrics or {})
    return TrainResult(name=cfg.name, path=target.run_uri(cfg.name), metrics=metrics, checkpoint=result.checkpoint,
                       start_epoch=int(returned.get("start_epoch", 1)), already_complete=bool(returned.get("already_complete")),
                       output_dir=run.output_dir,
                       ray_result=result)


def _check_resources(scaling: Resources, strict: bool) -> None:
    """Ray waits forever for resources it does not have: say so instead, on a local Ray."""
    have = ray.cluster_resources()
    need = {"CPU": scaling.workers * scaling.cpus_per_worker, "GPU": scaling.workers * scaling.gpus_per_worker}
    short = [f"{need[k]:g} {k}s (the cluster has {have.get(k, 0):g})" for k in need if need[k] > have.get(k, 0)]
    if not short:
        return
    message = f"{scaling.workers} worker(s) need {' and '.join(short)}"
    if strict:
        raise UserError(f"--workers {scaling.workers}: {message}; use fewer workers, or fewer --cpus-per-worker / --gpus-per-worker")
    log.warning("%s: the run waits until the cluster has them (autoscaling)", message)


def _failure(err: Exception, name: str, target: Storage) -> UserError:
    """A UserError raised in a worker (bad dataset, bad option) comes back as itself; anything
    else as TrainingFailed, which says how to continue."""
    failures = getattr(err, "worker_failures", None) or {}
    for rank, failure in sorted(failures.items()):
        user = _user_error_in(failure)
        if user is not None:
            return UserError(f"{user} (worker rank {rank})")
    first = next(iter(failures.values()), err)
    summary = str(first).strip().splitlines()[-1][:300] if str(first).strip() else type(first).__name__
    return TrainingFailed(f"run {name} failed: {summary}; its checkpoints are in {target.run_uri(name)}: fix the cause and "
                          "relaunch the same command (same --name and --storage) to continue from the last one")


def _user_error_in(error: BaseException | None, depth: int = 0) -> UserError | None:
    while error is not None and depth < 8:
        if isinstance(error, UserError):
            return error
        error = wrapped_error(error) or error.__cause__
        depth += 1
    return None


__all__ = ["DEFAULT_STORAGE", "CHECKPOINT_FILES", "PreparedRun", "Resources", "TrainResult", "TrainingFailed",
           "prepare_config", "prepare_run", "train_loop_per_worker", "train_on_ray"]
