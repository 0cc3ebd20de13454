"""Population-based training (`search.scheduler: pbt`): its entry, its Tune scheduler, and what the
driver, the trial and the results need of it. PB2 (orchestrator.search.schedulers.pb2) is the same
scheme.

Tune's `PopulationBasedTraining`, one per task behind the run's dispatching scheduler
(orchestrator.sweep.router), looks at a task's population every `perturbation_interval` epochs: a
trial in the bottom quantile is paused and restarted from a top trial's (the donor's) last Tune
checkpoint, with the donor's values mutated. A PBT trial trains in its own Tune trial process (one
worker, orchestrator.trial.pbt_session) and keeps its checkpoints in its own storage folder, as
every one-worker trial does; what it reports to Tune with a checkpoint epoch is a *pointer*, a small
`pbt.json` naming that folder, the epoch and the trial's lineage. A trial restarted with a pointer
of another trial continues from that trial's stored checkpoint (its newest, if that one has been
rotated away meanwhile) under its own new values: the donor's networks, optimizers, pools and epoch,
the new loss weights, learning rate and pool size (cyclegan.model.CycleGAN.load_state_dict).

A checkpoint epoch comes at least every `perturbation_interval` epochs (the trial's training options
say so), so that a donor always has a checkpoint where PBT looks. Each report of a PBT trial also
carries

- `hp/<option>`: the value of each searched training option at that epoch (also an MLflow metric),
- `pbt_lineage`: the trial's lineage as JSON: `exploits` (at which epoch it took whose checkpoint of
  which epoch, its old and new values) and `schedule` (the values its current weights were trained
  with, epoch range by epoch range, across the donors it descends from).

The lineage becomes each trial's `lineage` in the results file, and `pbt/lineage.json` plus the
`cyclegan.pbt.*` tags on the trial's MLflow run.

Nothing here imports Ray at module level (`validate` reads the options): Tune's scheduler class is
subclassed with its repair (`repaired`) when a task's scheduler is built.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from cyclegan.config import TrainConfig
from orchestrator.config.aliases import fields_of
from orchestrator.search.strategy import Options, Strategy, TuneSettings

HP_PREFIX = "hp/"  # hp/<TrainConfig field>: a searched option's value at an epoch
LINEAGE_KEY = "pbt_lineage"  # in each report: the trial's lineage, as JSON
POINTER_FILE = "pbt.json"  # in a Tune checkpoint and in the stored checkpoint it points to
LINEAGE_ARTIFACT = "pbt/lineage.json"
EXPLOITS_TAG = "cyclegan.pbt.exploits"  # how many times the trial exploited another
DONOR_TAG = "cyclegan.pbt.donor"  # the last donor: "<trial id>@<epoch>"


# ------------------------------------------------------------------------------------------------
# The entry


def interval_problems(interval: int, epochs: int) -> list[tuple[str, str]]:
    """A perturbation interval that no trial of `epochs` epochs reaches (pbt's and pb2's)."""
    if interval > epochs:
        return [
            (
                "perturbation_interval",
                f"{interval} epochs is longer than the {epochs} epochs a trial runs: no trial "
                "would ever exploit another",
            )
        ]
    return []


class PbtOptions(Options):
    type: Literal["pbt"]
    perturbation_interval: int = Field(
        ge=1,
        description="epochs between two looks at the population: a trial in the "
        "bottom quantile then continues from a top trial's checkpoint "
        "with mutated values",
    )
    hyperparam_mutations: dict[str, Any] = Field(
        min_length=1,
        description="training option (or lambda_cyc, lambda_idt) -> "
        "a list of values or `{choice: [...]}` (a mutation moves to a neighbour "
        "in the list), or a range as in `space` (uniform, loguniform, randint, "
        "quniform: a mutation multiplies by 0.8 or 1.2, which may leave the range); "
        "a trial starts from the space's value, else from one sampled here",
    )
    quantile_fraction: float = Field(
        0.25,
        ge=0,
        le=0.5,
        description="the bottom fraction of the population exploits the top fraction",
    )
    resample_probability: float = Field(
        0.25,
        ge=0,
        le=1,
        description="chance that a mutation draws a new value instead of perturbing the donor's",
    )
    synch: bool = Field(
        False,
        description="wait at each look until the whole population has reached it (Tune's "
        "synchronous "
        "PBT: every trial is paused and restarted from its checkpoint there); the default "
        "looks at each trial as it arrives",
    )

    def problems(self, epochs: int) -> list[tuple[str, str]]:
        return interval_problems(self.perturbation_interval, epochs)

    def searched(self) -> dict[str, tuple[str, Any]]:
        return {
            name: ("hyperparam_mutations", spec) for name, spec in self.hyperparam_mutations.items()
        }


class ResumedSynchRepair:
    """A repair of Tune's PBT (and PB2). Synchronous PBT (`synch: true`) runs a paused trial only
    while it is behind the next look; after a resumed sweep the trials can stand at different
    epochs, a look then lands on the furthest one's epoch, and every trial waits for a look that no
    running trial will ever reach. When nothing runs and every waiting trial is at or past the next
    look, the look moves one interval on."""

    def choose_trial_to_run(self, tune_controller):
        from ray.tune.experiment import Trial

        from orchestrator import ray_internals

        trial = super().choose_trial_to_run(tune_controller)
        if trial is not None or not ray_internals.pbt_synch(self):
            return trial
        trials = tune_controller.get_trials()
        waiting = [t for t in trials if t.status in (Trial.PENDING, Trial.PAUSED)]
        if not waiting or any(t.status == Trial.RUNNING for t in trials):
            return None
        times = [ray_internals.pbt_last_train_time(self, t) for t in waiting]
        if min(times) < ray_internals.pbt_next_look(self):
            return None
        ray_internals.pbt_move_next_look(self, max(times))
        return super().choose_trial_to_run(tune_controller)


@functools.cache
def repaired(scheduler: type) -> type:
    """Tune's `scheduler` class (PopulationBasedTraining, PB2) with ResumedSynchRepair:
    `TaskPopulationBasedTraining`, `TaskPB2`. Made when a task's scheduler is built, so that reading
    the options loads no Ray (nor PB2's scikit-learn)."""
    return type(
        f"Task{scheduler.__name__}",
        (ResumedSynchRepair, scheduler),
        {
            "__module__": __name__,
            "__doc__": f"Tune's {scheduler.__name__}, repaired (ResumedSynchRepair).",
        },
    )


def _pbt(options: PbtOptions, settings: TuneSettings):
    from ray.tune.schedulers import PopulationBasedTraining

    from orchestrator.search.distributions import tune_distribution

    # A list (or a choice) is a list for Tune: a mutation moves to a neighbour; a range becomes
    # Tune's domain.
    mutations = {
        name: list(spec)
        if isinstance(spec, list)
        else list(spec["choice"])
        if "choice" in spec
        else tune_distribution(spec)
        for name, spec in options.hyperparam_mutations.items()
    }
    # The epoch's own value, not the best so far: PBT compares where the trials are now. Checkpoints
    # every perturbation_interval epochs (the module docstring) give the exploiting trial its
    # donor's state.
    return repaired(PopulationBasedTraining)(
        time_attr="epoch",
        metric=settings.score or settings.metric,
        mode=settings.mode,
        perturbation_interval=options.perturbation_interval,
        hyperparam_mutations=mutations,
        quantile_fraction=options.quantile_fraction,
        resample_probability=options.resample_probability,
        synch=options.synch,
        log_config=False,
    )


ENTRY = Strategy(
    "pbt",
    "population-based training: every `perturbation_interval` epochs the task's worst trials "
    "continue "
    "from a best trial's checkpoint with mutated hyperparameters (lineage and per-epoch values in "
    "MLflow); "
    "one-worker trials, algorithm random or grid",
    PbtOptions,
    _pbt,
    takes_searcher=False,
    exploits=True,
)


# ------------------------------------------------------------------------------------------------
# What a PBT trial reports, and what the results read of it


def searched_fields(space: Mapping[str, Any]) -> list[str]:
    """The training options (TrainConfig fields) a task's search space names, aliases expanded: what
    `hp/` reports."""
    return list(dict.fromkeys(field for name in space for field in fields_of(name)))


def hyperparameters(cfg: TrainConfig, fields: list[str]) -> dict[str, float]:
    """`hp/<field>` -> the numeric value `cfg` trains with."""
    values = {field: getattr(cfg, field) for field in fields}
    return {
        f"{HP_PREFIX}{k}": float(v)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


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


def first_exploit_epoch(lineage: dict | None) -> int | None:
    """The first epoch a PBT trial trained with values other than those it started with: the
    earliest epoch an exploit went back to (None: it never exploited)."""
    exploits = (lineage or {}).get("exploits") or []
    return min((int(e["epoch"]) for e in exploits), default=None)


def best_before(history: list[dict], metric: str, mode: str, epoch: int) -> float | None:
    """A trial's best value of `metric` among its evaluated epochs before `epoch`. A history keeps
    each epoch's latest row, and training after an exploit starts at the exploit's epoch, so the
    rows before the first exploit's epoch are the trial's own, with its first values."""
    values = [
        row[metric]
        for row in history
        if (row.get("epoch") or 0) < epoch and isinstance(row.get(metric), (int, float))
    ]
    return (min if mode == "min" else max)(values, default=None)
