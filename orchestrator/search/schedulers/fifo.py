"""`search.scheduler: none`: Tune's first-in-first-out scheduler; every trial runs to its last
epoch."""

from __future__ import annotations

from typing import Literal

from orchestrator.search.strategy import Options, Strategy, TuneSettings


class NoScheduler(Options):
    type: Literal["none"] = "none"


def _fifo(options: NoScheduler, settings: TuneSettings):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


ENTRY = Strategy("none", "every trial runs to its last epoch", NoScheduler, _fifo)
