"""The base types of the search algorithms and trial schedulers a manifest can name.

An entry (`Strategy`) says what its name does, which options it takes (an `Options` model: what
`validate` checks, with field paths), which optional package it needs (checked by `validate`, naming
the field and the package), the search-space rules it imposes, and how to build its Ray Tune object.
The tables are orchestrator.search.algorithms.ALGORITHMS and
orchestrator.search.schedulers.SCHEDULERS; `field_type` makes a table the type of its manifest field
(a union tagged by `type`).

Nothing here imports Ray: `validate` runs without it, and each entry's builder imports Ray itself.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from operator import or_
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class Options(BaseModel):
    """The options of one algorithm or scheduler; `type` names the entry."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    type: str

    def problems(self, epochs: int) -> list[tuple[str, str]]:
        """(option, message) for values that do not fit a trial of `epochs` epochs."""
        return []

    def searched(self) -> dict[str, tuple[str, Any]]:
        """Search-space entries of its own: name -> (the option holding it, a list of values or a
        distribution as in `search.space`). The manifest checks them like `search.space`'s, and a
        trial samples its first value from them when the space lacks the name."""
        return {}


@dataclass(frozen=True)
class TuneSettings:
    """What building a Tune object needs besides its options."""

    metric: str  # the key Tune ranks by (the trial's best so far: orchestrator.storage.best)
    mode: str  # min or max
    epochs: int  # a trial's total epochs
    seed: int | None = None
    points: list[dict[str, Any]] = field(
        default_factory=list
    )  # points_to_evaluate: the baseline, first
    max_concurrent: int | None = (
        None  # Tune applies its own limit to Searchers only, not to a variant generator passed in
    )
    score: str | None = (
        None  # the epoch's own value of the metric (PBT compares the trials' current state)
    )


@dataclass(frozen=True)
class Strategy:
    name: str
    summary: str  # one line, for the docs
    options: type[Options]
    build: Callable[[Any, TuneSettings], Any]  # (options, settings) -> the Ray Tune object
    requires: str | None = None  # the pip package it needs
    module: str | None = None  # ... imported as (default: the package's name)
    exhaustive: bool = False  # every combination: only finite sets, `choice` becomes a grid axis
    takes_grid: bool = True  # False: `grid` entries are refused
    baseline_in_space: bool = False  # True: the baseline point must lie inside the search space
    searcher: bool = False  # an algorithm that Tune runs as a Searcher (it learns from results)
    takes_searcher: bool = True  # a scheduler that can follow a Searcher's suggestions
    exploits: bool = False  # trials continue from other trials' checkpoints (PBT:
    # orchestrator.search.schedulers.pbt), which only one-worker
    # trials can (EXPLOITS_ONE_WORKER says why)

    def missing_dependency(self) -> str | None:
        """The package this entry needs and this Python lacks, or None."""
        if self.requires and importlib.util.find_spec(self.module or self.requires) is None:
            return self.requires
        return None


def by_name(*entries: Strategy) -> dict[str, Strategy]:
    """A table: each entry under its name, in the order given (the docs' order)."""
    return {entry.name: entry for entry in entries}


def _by_name(value: Any) -> Any:
    """`optuna` is short for `{type: optuna}`."""
    return {"type": value} if isinstance(value, str) else value


def field_type(table: dict[str, Strategy]) -> Any:
    """The type of the manifest field that names an entry of `table`: its options, tagged by
    `type`."""
    union = reduce(or_, (s.options for s in table.values()))  # Options1 | Options2 | ...
    return Annotated[union, Field(discriminator="type"), BeforeValidator(_by_name)]


def build(table: dict[str, Strategy], options: Options, settings: TuneSettings) -> Any:
    """The Ray Tune object of the entry that `options` names."""
    return table[options.type].build(options, settings)
