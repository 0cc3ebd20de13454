"""Options of one Ray run that the CLI, the Python API and the sweeps share (no Ray import here).

`Resources` is the one resources type: a manifest's `resources` (per trial of a task), and what
`python -m orchestrator train` and `orchestrator.trial.ray_train.train_on_ray` take.
`prepare_config` checks a TrainConfig for a run on Ray before anything starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cyclegan.config import TrainConfig
from cyclegan.errors import UserError
from cyclegan.sources import parse_reference

DEFAULT_STORAGE = "./runs"
DEFAULT_KEEP_CHECKPOINTS = 3
GIB = 1 << 30
# What a training process reserves of Ray's `memory` resource unless told otherwise: a torch process
# with a small model and its data loader (the training worker of a tiny trial is ~0.7 GB).
DEFAULT_MEMORY_PER_WORKER_GIB = 1.0

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]*$")


def whole_gpus(workers: int, gpus_per_worker: float) -> bool:
    """Whether DDP can run with these GPUs: NCCL cannot run two ranks on one GPU, so with more than
    one worker each has none or whole GPUs."""
    return workers == 1 or gpus_per_worker in (0, int(gpus_per_worker))


class Resources(BaseModel):
    """How many DDP workers a run (one training, or one trial of a sweep) has and what each one
    gets."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    workers: int = Field(1, ge=1, description="DDP workers per trial")
    gpus_per_worker: float = Field(
        0, ge=0, description="GPUs per worker (whole numbers for multi-worker DDP)"
    )
    cpus_per_worker: float = Field(1, gt=0, description="CPUs per worker")
    memory_per_worker: float = Field(
        DEFAULT_MEMORY_PER_WORKER_GIB,
        ge=0,
        description="GiB of RAM each worker reserves (Ray's memory resource; 0: none)",
    )

    @model_validator(mode="after")
    def _whole_gpus_for_ddp(self) -> Resources:
        if not whole_gpus(self.workers, self.gpus_per_worker):
            raise ValueError(
                "gpus_per_worker must be a whole number when workers > 1 (fractional GPUs break "
                "NCCL DDP)"
            )
        return self

    @classmethod
    def from_flags(
        cls,
        workers: int,
        gpus_per_worker: float,
        cpus_per_worker: float,
        memory_per_worker: float = DEFAULT_MEMORY_PER_WORKER_GIB,
    ) -> Resources:
        """From `orchestrator train`'s flags: a UserError naming the flag for each bad value."""
        if workers < 1:
            raise UserError(f"--workers: {workers}; must be at least 1")
        if cpus_per_worker <= 0:
            raise UserError(f"--cpus-per-worker: {cpus_per_worker}; must be positive")
        if gpus_per_worker < 0:
            raise UserError(f"--gpus-per-worker: {gpus_per_worker}; must be 0 or more")
        if memory_per_worker < 0:
            raise UserError(f"--memory-per-worker: {memory_per_worker}; must be 0 or more")
        if not whole_gpus(workers, gpus_per_worker):
            raise UserError(
                f"--gpus-per-worker {gpus_per_worker}: must be a whole number with more than one "
                f"worker "
                "(NCCL cannot run two DDP ranks on one GPU)"
            )
        return cls(
            workers=workers,
            gpus_per_worker=gpus_per_worker,
            cpus_per_worker=cpus_per_worker,
            memory_per_worker=memory_per_worker,
        )

    @property
    def trains_in_trial(self) -> bool:
        """A one-worker trial trains in its Tune trial process; more workers make a Ray Train
        run."""
        return self.workers == 1

    @property
    def threads(self) -> int:
        """Torch threads of a CPU worker: as many as it has CPUs."""
        return max(1, int(self.cpus_per_worker))

    def worker_bundle(self) -> dict[str, float]:
        """One worker's Ray resources (memory in bytes, as Ray counts it)."""
        bundle = {
            "CPU": self.cpus_per_worker,
            "GPU": self.gpus_per_worker,
            "memory": self.memory_per_worker * GIB,
        }
        return {k: v for k, v in bundle.items() if v}

    def to_ray(self):
        """The `ray.train.ScalingConfig`."""
        from ray.train import ScalingConfig

        return ScalingConfig(
            num_workers=self.workers,
            use_gpu=self.gpus_per_worker > 0,
            resources_per_worker=self.worker_bundle(),
        )


def prepare_config(
    config: TrainConfig, resources: Resources, name: str | None = None
) -> TrainConfig:
    """Check the options for a run on Ray and make local paths absolute (workers run elsewhere):
    `config` itself when nothing changes, else one new TrainConfig with every change at once."""
    name = name or config.name
    if not _NAME.match(name):
        raise UserError(
            f"--name {name!r}: use letters, digits, '_', '.', '=' and '-' (it names a folder in "
            f"the storage)"
        )
    if config.continue_train:
        raise UserError(
            "--continue_train: not needed here; relaunching with the same --name and --storage "
            "resumes the run "
            "(to start from a single-machine run, pass --resume-from its folder)"
        )
    if config.device.startswith("cuda") and not resources.gpus_per_worker:
        raise UserError(
            f"--device {config.device}: the workers have no GPU; pass --gpus-per-worker 1 (or "
            f"--device auto)"
        )
    if config.device == "cpu" and resources.gpus_per_worker:
        raise UserError("--device cpu with --gpus-per-worker: drop one of them")
    ref = parse_reference(config.dataroot)  # the form of the reference, no I/O
    changes: dict[str, Any] = {"name": name} if name != config.name else {}
    if ref.kind in ("folder", "archive"):
        if not Path(ref.location).exists():
            raise UserError(
                f"--dataroot {config.dataroot}: not found (a local path must exist on every node: "
                f"use a shared "
                "folder, or an s3:// reference on a cluster)"
            )
        if ref.location != config.dataroot:
            changes["dataroot"] = ref.location
    for field in ("checkpoints_dir", "cache_dir", "inception_weights"):
        value = getattr(config, field, "")
        if value and "://" not in value and str(Path(value).expanduser().resolve()) != value:
            changes[field] = str(Path(value).expanduser().resolve())
    return config.replace(**changes) if changes else config
