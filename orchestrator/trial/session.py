"""What a training process runs: the cyclegan Trainer, reporting to Ray each epoch.

Two kinds of process run it, through the same loop (`run_worker`) and a session that says what
differs between them:

- a **Ray Train worker** (`train_loop_per_worker`, `TrainSession`): one rank of a DDP group under a
  TorchTrainer (`python -m orchestrator train`, and sweep trials with several workers). Ray Train
  hands back the last checkpoint after a failure and keeps the checkpoint folders;
- a **one-worker sweep trial** (`train_in_trial`, `TrialSession`): the Tune trial's own process
  trains, with no Train controller and no helper actors. It keeps the same checkpoint folders in
  storage itself (orchestrator.storage.checkpoints.StoredCheckpoints) and continues from the newest
  one when Tune retries or resumes the trial; it reports with `tune.report`.

Both read the rank, resolve the dataset once per node, load the checkpoint to continue from, and
report from the Trainer's end-of-epoch hook. Everything else is the library's.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import ray.train
import torch

from cyclegan.config import TrainConfig
from cyclegan.run_files import SAMPLES_DIR, sample_grid_file
from cyclegan.sources import resolve_dataset
from cyclegan.trainer import Trainer
from orchestrator.storage.best import BEST_CHECKPOINT, BEST_EPOCH, BestKeeper
from orchestrator.storage.checkpoints import (
    StoredCheckpoints,
    checkpoint_dir_name,
    load_reported_metrics,
    load_resume_state,
    stage,
)
from orchestrator.tracking.context import TrackingContext
from orchestrator.trial.ddp import (
    Collectives,
    consistency,
    decorrelate_pools,
    load_worker_state,
    make_wrap,
    rank_record,
)
from orchestrator.trial.spec import TrialSpec

log = logging.getLogger(__name__)

Listener = Callable[[int, dict], None]  # (epoch, reported metrics), on rank 0


class Session(Protocol):
    """What differs between a Ray Train worker and a one-worker Tune trial."""

    rank: int
    world_size: int
    local_rank: int

    def device(self) -> torch.device: ...

    def checkpoint(self) -> contextlib.AbstractContextManager[tuple[Path, str] | None]:
        """The checkpoint to continue from, as (local folder, where it came from), or None."""

    def report(self, metrics: dict, folder: Path | None = None, name: str | None = None) -> None:
        """One epoch's report; `folder`: a staged checkpoint to keep as `name`."""


class TrainSession:
    """A rank of a Ray Train worker group."""

    def __init__(self, spec: TrialSpec, resume_from: ray.train.Checkpoint | None = None):
        ctx = ray.train.get_context()
        self.spec, self.resume_from = (
            spec,
            resume_from,
        )  # resume_from: checked by the driver (ray_train.prepare_run)
        self.rank, self.world_size, self.local_rank = (
            ctx.get_world_rank(),
            ctx.get_world_size(),
            ctx.get_local_rank(),
        )

    def device(self) -> torch.device:
        from ray.train.torch import get_device

        return get_device() if self.spec.resources.gpus_per_worker else torch.device("cpu")

    @contextlib.contextmanager
    def checkpoint(self) -> Iterator[tuple[Path, str] | None]:
        # After a failure (or a relaunch with the same name), Ray hands back the last checkpoint.
        checkpoint = ray.train.get_checkpoint() or self.resume_from
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as folder:
            yield Path(folder), checkpoint.path

    def report(self, metrics: dict, folder: Path | None = None, name: str | None = None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(folder)) if folder else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)


class TrialSession:
    """The only rank of a one-worker sweep trial, in its Tune trial process."""

    rank, world_size, local_rank = 0, 1, 0

    def __init__(self, spec: TrialSpec):
        self.spec = spec
        self.stored = StoredCheckpoints(spec.storage, spec.name, spec.keep_checkpoints)

    def device(self) -> torch.device:
        # Ray gives the trial's process its GPU (CUDA_VISIBLE_DEVICES): the first visible one.
        return (
            torch.device("cuda", 0) if self.spec.resources.gpus_per_worker else torch.device("cpu")
        )

    @contextlib.contextmanager
    def checkpoint(self) -> Iterator[tuple[Path, str] | None]:
        # A retried or resumed trial continues from the newest checkpoint it kept.
        with self.stored.newest() as found:
            if found is not None:
                yield found
                return
        start = self.spec.resume_checkpoint()
        if start is None:
            yield None
            return
        with start.as_directory() as folder:
            yield Path(folder), start.path

    def report(self, metrics: dict, folder: Path | None = None, name: str | None = None) -> None:
        from ray import tune

        if folder is not None and name is not None:
            self.stored.save(folder, name)
        tune.report(metrics)


def train_loop_per_worker(config: dict) -> dict:
    """The TorchTrainer's per-worker function; `config` is {"spec": TrialSpec, "resume_from": its
    checkpoint} (orchestrator.trial.ray_train.prepare_run)."""
    spec: TrialSpec = config["spec"]
    return run_worker(spec, TrainSession(spec, config["resume_from"]))


def train_in_trial(
    spec: TrialSpec, session: Callable[[TrialSpec], TrialSession] = TrialSession
) -> dict:
    """Train a one-worker sweep trial in this process (a Tune function trial): the run `spec.name`
    in `spec.storage`. `session`: builds the trial's session from its spec (a PBT trial's:
    orchestrator.trial.pbt_session)."""
    return run_worker(spec, session(spec))


def run_worker(spec: TrialSpec, session: Session) -> dict:
    """One training process's whole run; returns the last metrics and where it started."""
    rank, world_size = session.rank, session.world_size
    _setup_logging()
    cfg = spec.config
    device = session.device()
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and the object collectives use the current device
    else:
        torch.set_num_threads(spec.resources.threads)  # as many threads as the worker has CPUs
    comm = Collectives(rank, world_size)
    data_root = resolve_once_per_node(cfg, session.local_rank, comm)

    state = own = None
    reported: dict = {}
    with session.checkpoint() as found:
        if found is not None:
            folder, origin = found
            state, own = load_resume_state(folder, rank, world_size)
            reported = load_reported_metrics(folder)
            if rank == 0:
                log.info("resuming after epoch %d from %s", state["epoch"], origin)

    listeners = []
    if spec.tracking and rank == 0:
        listeners.append(
            _tracking_listener(spec.tracking, cfg, spec.name, spec.output_dir, data_root)
        )
    keeper = (
        BestKeeper(spec.ranking, spec.storage, spec.name) if spec.ranking and rank == 0 else None
    )
    reporter = EpochReporter(
        cfg,
        comm,
        session,
        spec.output_dir,
        spec.run_uri,
        resumed_from=state["epoch"] if state else 0,
        listeners=listeners,
        keeper=keeper,
    )
    trainer = Trainer(
        cfg,
        rank=rank,
        world_size=world_size,
        device=device,
        wrap=make_wrap(cfg, device, world_size),
        on_epoch_end=[reporter],
        resume_state=state,
        output_dir=spec.output_dir,
        data_root=data_root,
        show_progress=False,
    )
    if state is None:
        decorrelate_pools(trainer.model, rank)
    elif own is not None:
        load_worker_state(trainer.model, own)  # this rank's own pools and RNG, as they were
    if trainer.start_epoch > cfg.total_epochs:
        if rank == 0:
            log.info(
                "%s is already complete (%d epochs); nothing to train", spec.name, cfg.total_epochs
            )
        # Report the final epoch again: a relaunched Tune trial whose driver died before it recorded
        # that result would otherwise keep an earlier epoch as the trial's last.
        session.report(reported if rank == 0 else {})
        return {"metrics": reported, "start_epoch": trainer.start_epoch, "already_complete": True}
    reporter.start()
    trainer.fit()
    return {"metrics": reporter.last, "start_epoch": trainer.start_epoch, "already_complete": False}


def resolve_once_per_node(cfg: TrainConfig, local_rank: int, comm: Collectives) -> Path:
    """Local rank 0 of each node fetches the dataset into the node's cache; the node's other
    workers then find it there (the cache's file lock would also make them wait, but this way
    they do not even list the bucket)."""

    def resolve() -> Path:
        return resolve_dataset(
            cfg.dataroot,
            cfg.cache_dir or None,
            endpoint_url=cfg.s3_endpoint_url or None,
            show_progress=False,
        )

    root = resolve() if local_rank == 0 else None
    comm.barrier()
    return root if root is not None else resolve()


class EpochReporter:
    """The Trainer's end-of-epoch hook: one report per epoch on every rank (under Ray Train it is a
    barrier), with the metrics averaged over ranks; every `save_epoch_freq` epochs and at the end,
    rank 0 attaches the checkpoint. With a `keeper` (rank 0), each report also carries the best
    epoch so far, whose generators the keeper holds in storage (orchestrator.storage.best)."""

    def __init__(
        self,
        cfg: TrainConfig,
        comm: Collectives,
        session: Session,
        out_dir: Path,
        run_uri: str,
        resumed_from: int = 0,
        listeners: list[Listener] | None = None,
        keeper: BestKeeper | None = None,
    ):
        self.cfg, self.comm, self.session, self.out_dir, self.run_uri = (
            cfg,
            comm,
            session,
            out_dir,
            run_uri,
        )
        self.resumed_from = resumed_from
        self.listeners = listeners or []
        self.keeper = keeper
        self.last: dict = {}
        self.checkpoint_path: str | None = None
        self.started = self.fit_started = time.perf_counter()

    def start(self) -> None:
        self.started = self.fit_started = time.perf_counter()

    def is_checkpoint_epoch(self, epoch: int) -> bool:
        return epoch % self.cfg.save_epoch_freq == 0 or epoch == self.cfg.total_epochs

    def __call__(self, trainer: Trainer, epoch: int, metrics: dict) -> None:
        now = time.perf_counter()
        wall, self.started = now - self.started, now
        comm, main = self.comm, trainer.is_main
        metrics = comm.average_losses(metrics)
        out = {k: v for k, v in metrics.items() if isinstance(v, (bool, int, float, str))}
        # Wall time of the epoch with everything around it (saving, sample grid, the previous
        # report), and since this attempt's first epoch began: what the Ray overhead is measured on.
        out.update(
            epoch_wall_s=wall,
            train_wall_s=now - self.fit_started,
            world_size=comm.world_size,
            batch_size_total=self.cfg.batch_size * comm.world_size,
            resumed_from_epoch=self.resumed_from,
        )
        if main and self.keeper is not None:
            out.update(self.keeper.update(epoch, out, trainer.out_dir))
        if not self.is_checkpoint_epoch(epoch):
            self._report(epoch, out if main else {})
            return
        states = (
            comm.gather_to_main(rank_record(trainer.model, trainer.loader.sampler.indices()))
            if comm.world_size > 1
            else None
        )
        if not main:
            self._report(epoch, {})
            return
        if states:
            out.update(consistency(states, len(trainer.dataset)))
        name = checkpoint_dir_name(epoch)
        self.checkpoint_path = f"{self.run_uri}/{name}"
        out["checkpoint_path"] = self.checkpoint_path
        with tempfile.TemporaryDirectory(dir=self.out_dir, prefix=".ray-checkpoint-") as tmp:
            folder = stage(self.out_dir, Path(tmp) / name, states, metrics=out)
            self._report(epoch, out, folder, name)

    def _report(
        self, epoch: int, metrics: dict, folder: Path | None = None, name: str | None = None
    ) -> None:
        if metrics:
            if self.checkpoint_path:
                metrics["checkpoint_path"] = self.checkpoint_path
            self.last = metrics
            for listener in self.listeners:
                listener(epoch, metrics)
        self.session.report(metrics, folder, name)


def _setup_logging() -> None:
    # Ray leaves the root logger unconfigured in workers: without this the trainer's epoch lines
    # (and the effective batch size) would not reach the worker logs.
    # The root stays at WARNING: Ray Train logs every report at INFO on loggers of its own.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("cyclegan", "orchestrator"):
        logging.getLogger(name).setLevel(logging.INFO)


def _tracking_listener(
    tracking: TrackingContext, cfg: TrainConfig, run_name: str, output_dir: Path, data_root: Path
) -> Listener:
    """The trial's record (MLflow), from rank 0: the dataset as input, each epoch's metrics and
    sample grid, and the final networks."""
    from orchestrator.tracking.backends import open_trial_recorder

    recorder = open_trial_recorder(
        tracking if tracking.trial else tracking.for_trial(run_name), params=cfg.to_record()
    )
    recorder.log_dataset(cfg.dataroot, data_root)

    initial_grid = output_dir / SAMPLES_DIR / sample_grid_file(0)

    def listener(epoch: int, metrics: dict) -> None:
        if recorder.log_epoch(epoch, metrics) and metrics.get("sample_grid"):
            if epoch == 1 and initial_grid.is_file():  # the untrained generators, at step 0
                recorder.log_sample_grid(0, initial_grid)
            recorder.log_sample_grid(epoch, metrics["sample_grid"])
        if metrics.get(BEST_EPOCH) == epoch:
            recorder.mark_best_epoch(
                epoch, output_dir, cfg.to_record(), metrics.get(BEST_CHECKPOINT)
            )
        if epoch == cfg.total_epochs:
            recorder.log_checkpoint(output_dir, "final", epoch, cfg.to_record())
            recorder.close()

    return listener
