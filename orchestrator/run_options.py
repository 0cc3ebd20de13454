"""Options of one Ray Train run that the CLI, the Python API and the sweeps share (no Ray import here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cyclegan.errors import UserError

DEFAULT_STORAGE = "./runs"
DEFAULT_KEEP_CHECKPOINTS = 3


class ScalingLike(Protocol):
    workers: int
    gpus_per_worker: float
    cpus_per_worker: float


@dataclass(frozen=True)
class Scaling:
    """How many DDP workers and what each one gets (same fields as a manifest's `resources`)."""

    workers: int = 1
    gpus_per_worker: float = 0
    cpus_per_worker: float = 1

    @classmethod
    def of(cls, value: ScalingLike | None) -> Scaling:
        if value is None:
            return cls()
        return cls(int(value.workers), float(value.gpus_per_worker), float(value.cpus_per_worker))

    def check(self) -> Scaling:
        if self.workers < 1:
            raise UserError(f"--workers: {self.workers}; must be at least 1")
        if self.cpus_per_worker <= 0:
            raise UserError(f"--cpus-per-worker: {self.cpus_per_worker}; must be positive")
        if self.gpus_per_worker < 0:
            raise UserError(f"--gpus-per-worker: {self.gpus_per_worker}; must be 0 or more")
        if self.workers > 1 and self.gpus_per_worker not in (0, int(self.gpus_per_worker)):
            raise UserError(f"--gpus-per-worker {self.gpus_per_worker}: must be a whole number with more than one worker "
                            "(NCCL cannot run two DDP ranks on one GPU)")
        return self

    def to_ray(self):
        """The `ray.train.ScalingConfig`."""
        from ray.train import ScalingConfig

        resources = {"CPU": self.cpus_per_worker}
        if self.gpus_per_worker:
            resources["GPU"] = self.gpus_per_worker
        return ScalingConfig(num_workers=self.workers, use_gpu=self.gpus_per_worker > 0, resources_per_worker=resources)
