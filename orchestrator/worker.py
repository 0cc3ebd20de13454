"""What every Ray Train worker runs: the cyclegan Trainer under DDP, reporting to Ray each epoch.

The Ray-specific part is this file only: read the rank, resolve the dataset once per node,
load the checkpoint Ray hands back after a failure (or the starting one), and `ray.train.report`
from the Trainer's end-of-epoch hook. Everything else is the library's.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ray.train
import torch
from ray.train.torch import get_device

from cyclegan.config import TrainConfig
from cyclegan.sources import resolve_dataset
from cyclegan.trainer import Trainer

from .best import BEST_EPOCH, BestKeeper
from .checkpoints import checkpoint_dir_name, load_reported_metrics, load_resume_state, stage
from .ddp import Collectives, consistency, decorrelate_pools, load_worker_state, make_wrap, rank_record

log = logging.getLogger(__name__)

Listener = Callable[[int, dict], None]  # (epoch, reported metrics), on rank 0


def train_loop_per_worker(config: dict) -> dict:
    """The TorchTrainer's per-worker function. `config` is `orchestrator.train.worker_config(...)`:
    train (TrainConfig as a dict), output_dir, gpus_per_worker, threads, resume_from (a Checkpoint
    or None), run_uri, tracking (or None), storage, ranking (or None: no best epoch kept)."""
    ctx = ray.train.get_context()
    rank, world_size, local_rank = ctx.get_world_rank(), ctx.get_world_size(), ctx.get_local_rank()
    _setup_logging()
    cfg = TrainConfig.from_dict(config["train"])
    device = get_device() if config["gpus_per_worker"] else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and the object collectives use the current device
    else:
        torch.set_num_threads(config["threads"])  # as many threads as the worker has CPUs
    comm = Collectives(rank, world_size)
    data_root = resolve_once_per_node(cfg, local_rank, comm)

    # After a failure (or a relaunch with the same name), Ray hands back the last checkpoint.
    checkpoint = ray.train.get_checkpoint() or config.get("resume_from")
    state = own = None
    reported: dict = {}
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state, own = load_resume_state(folder, rank, world_size)
            reported = load_reported_metrics(folder)
        if rank == 0:
            log.info("resuming after epoch %d from %s", state["epoch"], checkpoint.path)

    output_dir = Path(config["output_dir"])
    listeners = []
    if config.get("tracking") and rank == 0:
        listeners.append(_tracking_listener(config["tracking"], cfg, config["run_name"], output_dir, data_root))
    keeper = BestKeeper(config["ranking"], config["storage"], config["run_name"]) if config.get("ranking") and rank == 0 else None
    reporter = EpochReporter(cfg, comm, output_dir, config["run_uri"],
                             resumed_from=state["epoch"] if state else 0, listeners=listeners, keeper=keeper)
    trainer = Trainer(cfg, rank=rank, world_size=world_size, device=device, wrap=make_wrap(cfg, device, world_size),
                      on_epoch_end=[reporter], resume_state=state, output_dir=output_dir,
                      data_root=data_root, show_progress=False)
    if state is None:
        decorrelate_pools(trainer.model, rank)
    elif own is not None:
        load_worker_state(trainer.model, own)  # this rank's own pools and RNG, as they were
    if trainer.start_epoch > cfg.total_epochs:
        if rank == 0:
            log.info("%s is already complete (%d epochs); nothing to train", config["run_name"], cfg.total_epochs)
        # Report the final epoch again: a relaunched Tune trial whose driver died before it recorded
        # that result would otherwise keep an earlier epoch as the trial's last.
        ray.train.report(reported if rank == 0 else {})
        return {"metrics": reported, "start_epoch": trainer.start_epoch, "already_complete": True}
    reporter.start()
    trainer.fit()
    return {"metrics": reporter.last, "start_epoch": trainer.start_epoch, "already_complete": False}


def resolve_once_per_node(cfg: TrainConfig, local_rank: int, comm: Collectives) -> Path:
    """Local rank 0 of each node fetches the dataset into the node's cache; the node's other
    workers then find it there (the cache's file lock would also make them wait, but this way
    they do not even list the bucket)."""
    def resolve() -> Path:
        return resolve_dataset(cfg.dataroot, cfg.cache_dir or None, endpoint_url=cfg.s3_endpoint_url or None, show_progress=False)

    root = resolve() if local_rank == 0 else None
    comm.barrier()
    return root if root is not None else resolve()


class EpochReporter:
    """The Trainer's end-of-epoch hook: one `ray.train.report` per epoch on every rank (it is a
    barrier), with the metrics averaged over ranks; every `save_epoch_freq` epochs and at the
    end, rank 0 attaches the checkpoint. With a `keeper` (rank 0), each report also carries the
    best epoch so far, whose generators the keeper holds in storage (orchestrator.best)."""

    def __init__(self, cfg: TrainConfig, comm: Collectives, out_dir: Path, run_uri: str, resumed_from: int = 0,
                 listeners: list[Listener] | None = None, keeper: BestKeeper | None = None):
        self.cfg, self.comm, self.out_dir, self.run_uri = cfg, comm, out_dir, run_uri
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
        # Wall time of the epoch with everything around it (saving, sample grid, the previous report),
        # and since this attempt's first epoch began: what the Ray overhead is measured on.
        out.update(epoch_wall_s=wall, train_wall_s=now - self.fit_started, world_size=comm.world_size,
                   batch_size_total=self.cfg.batch_size * comm.world_size, resumed_from_epoch=self.resumed_from)
        if main and self.keeper is not None:
            out.update(self.keeper.update(epoch, out, trainer.out_dir))
        if not self.is_checkpoint_epoch(epoch):
            self._report(epoch, out if main else {})
            return
        states = comm.gather_to_main(rank_record(trainer.model, trainer.loader.sampler.indices())) if comm.world_size > 1 else None
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
            self._report(epoch, out, ray.train.Checkpoint.from_directory(str(folder)), name)

    def _report(self, epoch: int, metrics: dict, checkpoint=None, name: str | None = None) -> None:
        if metrics:
            if self.checkpoint_path:
                metrics["checkpoint_path"] = self.checkpoint_path
            self.last = metrics
            for listener in self.listeners:
                listener(epoch, metrics)
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)


def _setup_logging() -> None:
    # Ray leaves the root logger unconfigured in workers: without this the trainer's epoch lines
    # (and the effective batch size) would not reach the worker logs.
    # The root stays at WARNING: Ray Train logs every report at INFO on loggers of its own.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("cyclegan", "orchestrator"):
        logging.getLogger(name).setLevel(logging.INFO)


def _tracking_listener(tracking: dict, cfg: TrainConfig, run_name: str, output_dir: Path, data_root: Path) -> Listener:
    """MLflow, from rank 0: the dataset as input, each epoch's metrics and sample grid, and the final
    networks. `tracking` holds the plain ids the driver made (see orchestrator.tracking.TrialLogger)."""
    from .tracking import TrialLogger

    options = dict(tracking)
    trial = str(options.pop("trial", run_name))
    logger = TrialLogger(trial_name=trial, params=cfg.to_record(), **options)
    logger.log_dataset(cfg.dataroot, data_root)

    def listener(epoch: int, metrics: dict) -> None:
        if logger.log_epoch(epoch, metrics) and metrics.get("sample_grid"):
            logger.log_sample_grid(epoch, metrics["sample_grid"])
        if metrics.get(BEST_EPOCH) == epoch:
            logger.mark_best_epoch(epoch)
        if epoch == cfg.total_epochs:
            logger.log_checkpoint(output_dir, "final", epoch, cfg.to_record())
            logger.stop_system_metrics()

    return listener
