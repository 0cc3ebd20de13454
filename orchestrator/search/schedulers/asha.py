"""`search.scheduler: asha`: asynchronous successive halving, which stops poor trials early at each
rung."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from orchestrator.search.strategy import Options, Strategy, TuneSettings


class AshaOptions(Options):
    type: Literal["asha"]
    grace_period: int = Field(
        1, ge=1, description="epochs every trial runs before ASHA may stop it"
    )
    reduction_factor: float = Field(
        3, gt=1, description="ASHA keeps 1/reduction_factor of the trials at each rung"
    )
    max_t: int | None = Field(
        None, ge=1, description="ASHA's last rung in epochs (default: the trial's total epochs)"
    )

    def problems(self, epochs: int) -> list[tuple[str, str]]:
        if self.grace_period > epochs:
            return [
                (
                    "grace_period",
                    f"{self.grace_period} epochs is longer than the {epochs} epochs a trial runs",
                )
            ]
        return []


def _asha(options: AshaOptions, settings: TuneSettings):
    from ray.tune.schedulers import ASHAScheduler

    # metric and mode come from the TuneConfig
    return ASHAScheduler(
        time_attr="epoch",
        max_t=options.max_t or settings.epochs,
        grace_period=options.grace_period,
        reduction_factor=options.reduction_factor,
    )


ENTRY = Strategy(
    "asha",
    "ASHA (asynchronous successive halving) stops the trials whose best so far is poor at each "
    "rung; "
    "it compares only trials of the same task",
    AshaOptions,
    _asha,
)
