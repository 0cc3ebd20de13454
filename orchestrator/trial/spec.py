"""One training run's request: what to train, on what, where it is kept and how it is watched.

    config = TrainConfig(dataroot="s3://data/horse2zebra", name="h2z")
    spec = TrialSpec(config, Resources(workers=8, gpus_per_worker=1), "s3://runs/cyclegan",
                     max_failures=3)

The same frozen object goes from the caller (`python -m orchestrator train`, a sweep's trial in
orchestrator.trial.trainable) to the driver side (orchestrator.trial.ray_train) and, pickled, to
every training process (orchestrator.trial.session). It is checked at its birth: the config for a
run on Ray (`prepare_config`), the retry and retention counts, the storage's form (no I/O: the
driver checks it can write there before it starts the run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cyclegan.config import TrainConfig
from cyclegan.errors import UserError
from orchestrator.config.resources import (
    DEFAULT_KEEP_CHECKPOINTS,
    DEFAULT_STORAGE,
    Resources,
    prepare_config,
)
from orchestrator.storage.best import Ranking
from orchestrator.storage.location import Storage, parse_storage
from orchestrator.tracking.context import TrackingContext

if TYPE_CHECKING:
    import ray.train


@dataclass(frozen=True)
class TrialSpec:
    """One run of `config` on `resources`, kept in `storage` under the config's name.

    The run is `<storage>/<name>/` (`name`: the config's name unless given); launched again with the
    same name and storage, it continues from its last checkpoint.
    """

    config: TrainConfig  # checked for Ray (prepare_config): paths absolute, name = the run's name
    resources: Resources = field(default_factory=Resources)
    storage: Storage | str = (
        DEFAULT_STORAGE  # a folder or s3://bucket/prefix; parsed into a Storage at birth
    )
    name: str | None = None  # renames the run; afterwards always the config's name
    ranking: Ranking | None = (
        None  # keep the best epoch by this metric in <run>/best/ (orchestrator.storage.best)
    )
    tracking: TrackingContext | None = None  # the MLflow ids the driver made; None: no tracking
    keep_checkpoints: int = (
        DEFAULT_KEEP_CHECKPOINTS  # checkpoints kept in storage, the oldest deleted
    )
    max_failures: int = 0  # worker-group failures a Ray Train run recovers from (-1: forever)
    resume_from: str | None = (
        None  # a checkpoint folder to start from when the run has none of its own
    )
    callbacks: tuple[
        Any, ...
    ] = ()  # ray.tune Callbacks of a Ray Train run (a sweep's TuneReportCallback)

    def __post_init__(self) -> None:
        # Frozen: the checked values replace the given ones once, here.
        object.__setattr__(self, "config", prepare_config(self.config, self.resources, self.name))
        object.__setattr__(self, "name", self.config.name)
        if self.max_failures < -1:
            raise UserError(
                f"--max-failures {self.max_failures}: use 0 or more (-1: retry forever)"
            )
        if self.keep_checkpoints < 1:
            raise UserError(f"--keep-checkpoints {self.keep_checkpoints}: keep at least 1")
        if not isinstance(self.storage, Storage):
            object.__setattr__(self, "storage", parse_storage(self.storage))
        object.__setattr__(self, "callbacks", tuple(self.callbacks))

    @property
    def run_uri(self) -> str:
        """Where the run's checkpoints live: `<storage>/<name>/checkpoint_epoch_NNNN/`."""
        return self.storage.run_uri(self.name)

    @property
    def output_dir(self) -> Path:
        """Rank 0's local folder: the trainer's files, sample grids and logs."""
        return Path(self.config.checkpoints_dir) / self.config.name

    def resume_checkpoint(self) -> ray.train.Checkpoint | None:
        """`resume_from` as a checkpoint: a folder holding latest_state.pt (a single-machine run's
        output folder, or a Ray run's checkpoint_epoch_NNNN/), local (readable on every node) or
        s3://."""
        if not self.resume_from:
            return None
        import ray.train

        from cyclegan.run_files import STATE_FILE
        from orchestrator.storage.checkpoints import state_file

        target = parse_storage(self.resume_from)
        if target.is_local:
            return ray.train.Checkpoint(str(state_file(target.path).parent))
        info = target.filesystem.get_file_info(f"{target.path}/{STATE_FILE}")
        if info.type.name != "File":
            raise UserError(f"--resume-from {target.shown}: no {STATE_FILE} there")
        return ray.train.Checkpoint(target.path, filesystem=target.filesystem)
