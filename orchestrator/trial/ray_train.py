"""One CycleGAN training on Ray Train: DDP over N workers, checkpoints in shared storage, retries.

    from orchestrator import Resources, TrialSpec, train_on_ray
    config = TrainConfig(dataroot="s3://data/horse2zebra", name="h2z")
    resources = Resources(workers=8, gpus_per_worker=1)
    result = train_on_ray(TrialSpec(config, resources, "s3://runs/cyclegan", max_failures=3))

The driver side only: check the storage before anything starts (the `TrialSpec` checked the rest
at its birth), start (or join) Ray, build the `TorchTrainer` (`prepare_run`), run it, and turn
worker failures into one clear error. `python -m orchestrator train` and each trial of a sweep with
several workers (orchestrator.trial.trainable) call `train_on_ray`; what the workers run is
`orchestrator.trial.session`.

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

from cyclegan.errors import UserError
from orchestrator.config.resources import Resources
from orchestrator.ray_internals import wrapped_error
from orchestrator.runtime import connect
from orchestrator.storage.location import Storage, validate_storage
from orchestrator.trial.session import train_loop_per_worker
from orchestrator.trial.spec import TrialSpec

log = logging.getLogger(__name__)


class TrainingFailed(UserError):
    """The run stopped on worker failures (after its retries); it can be continued by
    relaunching."""

    exit_code = 1


@dataclass
class TrainResult:
    name: str
    path: str  # the run's folder in storage
    metrics: dict[str, Any]  # the last epoch's metrics (losses averaged over the workers)
    checkpoint: (
        ray.train.Checkpoint | None
    )  # the last checkpoint (a folder of cyclegan checkpoint files)
    start_epoch: int  # the first epoch the final attempt trained (1: from scratch)
    already_complete: bool  # relaunched after the run had finished: nothing was trained
    output_dir: Path  # sample grids and logs, on rank 0's node
    ray_result: Any = None  # ray.train.Result

    @property
    def checkpoint_path(self) -> str | None:
        return self.metrics.get("checkpoint_path") or (
            self.checkpoint.path if self.checkpoint else None
        )


@dataclass
class PreparedRun:
    trainer: TorchTrainer
    spec: TrialSpec  # its storage checked: writable, or a reachable bucket


def prepare_run(spec: TrialSpec) -> PreparedRun:
    """Everything `train_on_ray` does before `TorchTrainer.fit()`: the checks, then the trainer."""
    validate_storage(spec.storage)
    run_config = RunConfig(
        name=spec.name,
        storage_path=spec.storage.path,
        storage_filesystem=spec.storage.filesystem,
        failure_config=FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=spec.keep_checkpoints),
        callbacks=list(spec.callbacks),
    )
    loop_config = {"spec": spec, "resume_from": spec.resume_checkpoint()}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=spec.resources.to_ray(),
        run_config=run_config,
    )
    return PreparedRun(trainer, spec)


def train_on_ray(spec: TrialSpec, *, address: str | None = None) -> TrainResult:
    """Train `spec.config` on `spec.resources` workers with checkpoints in
    `<spec.storage>/<spec.name>/`.

    Args:
        spec: the run (orchestrator.trial.spec.TrialSpec): the config, the workers, the storage, and
            `max_failures` (worker-group failures to recover from, each resuming from the last
            checkpoint), `keep_checkpoints` (how many stay in storage), `resume_from` (a checkpoint
            folder to start from when the run has none of its own yet), `ranking` (keep the best
            epoch in `<storage>/<name>/best/`), `tracking` (MLflow), `callbacks` (Tune's).
        address: the Ray cluster to join ('auto', ray://HOST:PORT); None: $RAY_ADDRESS, else a
            private local Ray.

    Returns the last epoch's metrics, the last checkpoint and where the run started (TrainResult).
    Raises TrainingFailed when the workers failed more than `max_failures` times; a UserError raised
    in a worker (a bad dataset) comes back as itself.
    """
    run = prepare_run(spec)
    scaling, target = spec.resources, spec.storage
    started_here = connect(address)
    _check_resources(scaling, strict=started_here)
    if target.is_local and len([n for n in ray.nodes() if n.get("Alive")]) > 1:
        log.warning(
            "storage %s is a local path on a multi-node cluster: it must be a folder shared by "
            "every node",
            target.shown,
        )
    log.info(
        "Ray Train run %s: %d worker(s) x batch %d = effective batch %d; checkpoints in %s (the "
        "last %d kept)",
        spec.name,
        scaling.workers,
        spec.config.batch_size,
        spec.config.batch_size * scaling.workers,
        spec.run_uri,
        spec.keep_checkpoints,
    )
    try:
        result = run.trainer.fit()
    except ray.train.TrainingFailedError as err:
        raise _failure(err, spec.name, target) from None
    returned = result.return_value or {}
    metrics = returned.get("metrics") or dict(result.metrics or {})
    return TrainResult(
        name=spec.name,
        path=spec.run_uri,
        metrics=metrics,
        checkpoint=result.checkpoint,
        start_epoch=int(returned.get("start_epoch", 1)),
        already_complete=bool(returned.get("already_complete")),
        output_dir=spec.output_dir,
        ray_result=result,
    )


def _check_resources(scaling: Resources, strict: bool) -> None:
    """Ray waits forever for resources it does not have: say so instead, on a local Ray."""
    have = ray.cluster_resources()
    need = {
        "CPU": scaling.workers * scaling.cpus_per_worker,
        "GPU": scaling.workers * scaling.gpus_per_worker,
    }
    short = [
        f"{need[k]:g} {k}s (the cluster has {have.get(k, 0):g})"
        for k in need
        if need[k] > have.get(k, 0)
    ]
    if not short:
        return
    message = f"{scaling.workers} worker(s) need {' and '.join(short)}"
    if strict:
        raise UserError(
            f"--workers {scaling.workers}: {message}; use fewer workers, or fewer "
            f"--cpus-per-worker / --gpus-per-worker"
        )
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
    summary = (
        str(first).strip().splitlines()[-1][:300] if str(first).strip() else type(first).__name__
    )
    return TrainingFailed(
        f"run {name} failed: {summary}; its checkpoints are in {target.run_uri(name)}: fix the "
        f"cause and "
        "relaunch the same command (same --name and --storage) to continue from the last one"
    )


def _user_error_in(error: BaseException | None, depth: int = 0) -> UserError | None:
    while error is not None and depth < 8:
        if isinstance(error, UserError):
            return error
        error = wrapped_error(error) or error.__cause__
        depth += 1
    return None


__all__ = [
    "PreparedRun",
    "Resources",
    "TrainResult",
    "TrainingFailed",
    "TrialSpec",
    "prepare_run",
    "train_loop_per_worker",
    "train_on_ray",
]
