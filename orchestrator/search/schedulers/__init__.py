"""The trial schedulers a manifest can name (`search.scheduler`): one module per family, one table.

Each module holds its family's options (an `Options` subclass, `type: Literal["name"]`, each option
a pydantic field with a description) and `ENTRY`, its `Strategy` (orchestrator.search.strategy):
summary, the package it needs, its rules, and a builder `(options, TuneSettings) -> the Ray Tune
scheduler` that imports Ray itself, since `validate` reads these modules without Ray.

Adding a scheduler is one module here plus the table's line below (its module on the import line,
its `ENTRY` in SCHEDULERS); then paste `python -m orchestrator.search` into docs/manifest.md.
Validation, the docs' table and the sweep read nothing else. A scheduler whose trials continue from
other trials' checkpoints (`exploits=True`, as pbt and pb2) also needs its trial session:
orchestrator.trial.pbt_session.
"""

from __future__ import annotations

from orchestrator.search.schedulers import asha, fifo, pb2, pbt
from orchestrator.search.strategy import Strategy, by_name, field_type

SCHEDULERS: dict[str, Strategy] = by_name(fifo.ENTRY, asha.ENTRY, pbt.ENTRY, pb2.ENTRY)

SchedulerField = field_type(SCHEDULERS)

EXPLOITS_ONE_WORKER = (
    "an exploiting trial continues from its donor's checkpoint, and a trial of several workers is "
    "a Ray "
    "Train run, which always continues from its own"
)
