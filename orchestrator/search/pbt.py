"""Population-based training (`search.scheduler: pbt`): what the driver and the results need of it.

Tune's `PopulationBasedTraining` (or PB2: `scheduler: pb2`), one per task behind the run's dispatching scheduler
(orchestrator.sweep.router), looks at a task's population every `perturbation_interval` epochs: a trial
in the bottom quantile is paused and restarted from a top trial's (the donor's) last Tune checkpoint,
with the donor's values mutated. A PBT trial trains in its own Tune trial process (one worker,
orchestrator.trial.pbt_session) and keeps its checkpoints in its own storage folder, as every one-worker
trial does; what it reports to Tune with a checkpoint epoch is a *pointer*, a small `pbt.json`
naming that folder, the epoch and the trial's lineage. A trial restarted with a pointer of another
trial continues from that trial's stored checkpoint (its newest, if that one has been rotated away
meanwhile) under its own new values: the donor's networks, optimizers, pools and epoch, the new loss
weights, learning rate and pool size (cyclegan.model.CycleGAN.load_state_dict).

A checkpoint epoch comes at least every `perturbation_interval` epochs (`TaskPlan.trial_config`), so that a
donor always has a checkpoint where PBT looks. Each report of a PBT trial also carries

- `hp/<option>`: the value of each searched training option at that epoch (also an MLflow metric),
- `pbt_lineage`: the trial's lineage as JSON: `exploits` (at which epoch it took whose checkpoint of
  which epoch, its old and new values) and `schedule` (the values its current weights were trained
  with, epoch range by epoch range, across the donors it descends from).

The lineage becomes each trial's `lineage` in the results file, and `pbt/lineage.json` plus the
`cyclegan.pbt.*` tags on the trial's MLflow run.
"""

from __future__ import annotations

import json
from typing import Any

from cyclegan.config import TrainConfig
from orchestrator.config.aliases import ALIASES
from orchestrator.config.plan import TaskPlan
from orchestrator.search.strategies import SCHEDULERS

HP_PREFIX = "hp/"                  # hp/<TrainConfig field>: a searched option's value at an epoch
LINEAGE_KEY = "pbt_lineage"        # in each report: the trial's lineage, as JSON
POINTER_FILE = "pbt.json"          # in a Tune checkpoint and in the stored checkpoint it points to
LINEAGE_ARTIFACT = "pbt/lineage.json"
EXPLOITS_TAG = "cyclegan.pbt.exploits"          # how many times the trial exploited another
DONOR_TAG = "cyclegan.pbt.donor"                # the last donor: "<trial id>@<epoch>"


def exploits(plan: TaskPlan) -> bool:
    """Whether the task's trials continue from each other's checkpoints."""
    return SCHEDULERS[plan.search.scheduler.type].exploits


def searched_fields(plan: TaskPlan) -> list[str]:
    """The training options (TrainConfig fields) the task searches, aliases expanded: what `hp/` reports."""
    return list(dict.fromkeys(field for name in plan.space for field in ALIASES.get(name, (name,))))


def hyperparameters(cfg: TrainConfig, fields: list[str]) -> dict[str, float]:
    """`hp/<field>` -> the numeric value `cfg` trains with."""
    values = {field: getattr(cfg, field) for field in fields}
    return {f"{HP_PREFIX}{k}": float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def new_lineage(trial_id: str, values: dict[str, Any]) -> dict[str, list]:
    """A trial's lineage before any exploit: its own values from the first epoch."""
    return {"exploits": [], "schedule": [{"trial": trial_id, "from_epoch": 1, "values": values}]}


def lineage_of(metrics: dict | None) -> dict | None:
    """The lineage a PBT trial reported (None for other trials)."""
    text = (metrics or {}).get(LINEAGE_KEY)
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
