"""What a PBT trial's training options need; the rest of population-based training is
orchestrator.search.schedulers.pbt."""

from __future__ import annotations

import math
from typing import Any

from cyclegan.config import TrainConfig
from orchestrator.config.manifest import TaskPlan
from orchestrator.search.build import exploits


# moved to config by the config change
def train_options(plan: TaskPlan, values: dict[str, Any]) -> dict[str, Any]:
    """Training options a PBT trial needs: a checkpoint at least every perturbation_interval epochs (at each of
    its multiples, where PBT looks), with the task's own checkpoint epochs kept."""
    if not exploits(plan):
        return {}
    interval = plan.search.scheduler.perturbation_interval
    return {"save_epoch_freq": math.gcd(interval, values.get("save_epoch_freq", TrainConfig.save_epoch_freq))}
