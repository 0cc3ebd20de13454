"""`search.scheduler: pb2`: population-based bandits, PBT (orchestrator.search.schedulers.pbt) whose
new values come from a Gaussian-process model of the population's results. Ray's PB2 imports
scikit-learn, which the driver loads only when a task's pb2 scheduler is built; this module's
options load neither."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from orchestrator.search.schedulers.pbt import interval_problems, repaired
from orchestrator.search.strategy import Options, Strategy, TuneSettings


class Pb2Options(Options):
    type: Literal["pb2"]
    perturbation_interval: int = Field(
        ge=1, description="epochs between two looks at the population (as with pbt)"
    )
    hyperparam_bounds: dict[str, list[float]] = Field(
        min_length=1,
        description="training option (or lambda_cyc, lambda_idt) "
        "-> [low, high]: a Gaussian-process bandit picks the exploiting "
        "trial's new value in that range from the population's results; "
        "a trial starts from the space's value, else a uniform draw",
    )
    quantile_fraction: float = Field(
        0.25,
        ge=0,
        le=0.5,
        description="the bottom fraction of the population exploits the top fraction",
    )
    synch: bool = Field(
        False, description="wait at each look for the whole population (as with pbt)"
    )

    def problems(self, epochs: int) -> list[tuple[str, str]]:
        return interval_problems(self.perturbation_interval, epochs)

    def searched(self) -> dict[str, tuple[str, Any]]:
        return {
            name: ("hyperparam_bounds", {"uniform": bounds})
            for name, bounds in self.hyperparam_bounds.items()
        }


def _pb2(options: Pb2Options, settings: TuneSettings):
    from ray.tune.schedulers.pb2 import PB2  # imports scikit-learn

    # Repaired as PBT is (ResumedSynchRepair).
    return repaired(PB2)(
        time_attr="epoch",
        metric=settings.score or settings.metric,
        mode=settings.mode,
        perturbation_interval=options.perturbation_interval,
        hyperparam_bounds=options.hyperparam_bounds,
        quantile_fraction=options.quantile_fraction,
        synch=options.synch,
        log_config=False,
    )


ENTRY = Strategy(
    "pb2",
    "population-based bandits (PB2): PBT whose new values come from a Gaussian-process model of "
    "the "
    "population's results instead of random mutations; ranges only",
    Pb2Options,
    _pb2,
    requires="scikit-learn",
    module="sklearn",
    takes_searcher=False,
    exploits=True,
)
