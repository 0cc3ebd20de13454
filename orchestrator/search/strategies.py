"""The search algorithms and trial schedulers a manifest can name: one table each, one entry per name.

An entry says what the name does, which options it takes (a pydantic model: what `validate`
checks, with field paths), which optional package it needs (checked by `validate`, naming the
field and the package), the search-space rules it imposes, and how to build its Ray Tune object.
Validation (orchestrator.config.manifest), the sweep (orchestrator.search.build) and docs/manifest.md (the
tables between the `strategies` markers, printed by `python -m orchestrator.search.strategies`) all read
these tables: adding an algorithm or a scheduler is one entry here.

Nothing here imports Ray at module level: `validate` runs without it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from operator import or_
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class Options(BaseModel):
    """The options of one algorithm or scheduler; `type` names the entry."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    type: str

    def problems(self, epochs: int) -> list[tuple[str, str]]:
        """(option, message) for values that do not fit a trial of `epochs` epochs."""
        return []

    def searched(self) -> dict[str, tuple[str, Any]]:
        """Search-space entries of its own: name -> (the option holding it, a list of values or a distribution as in `search.space`).
        The manifest checks them like `search.space`'s, and a trial samples its first value from them when the
        space lacks the name."""
        return {}


@dataclass(frozen=True)
class TuneSettings:
    """What building a Tune object needs besides its options."""

    metric: str                      # the key Tune ranks by (the trial's best so far: orchestrator.storage.best)
    mode: str                        # min or max
    epochs: int                      # a trial's total epochs
    seed: int | None = None
    points: list[dict[str, Any]] = field(default_factory=list)  # points_to_evaluate: the baseline, first
    max_concurrent: int | None = None  # Tune applies its own limit to Searchers only, not to a variant generator passed in
    score: str | None = None         # the epoch's own value of the metric (PBT compares the trials' current state)


@dataclass(frozen=True)
class Strategy:
    name: str
    summary: str                                  # one line, for the docs
    options: type[Options]
    build: Callable[[Any, TuneSettings], Any]     # (options, settings) -> the Ray Tune object
    requires: str | None = None                   # the pip package it needs
    module: str | None = None                     # ... imported as (default: the package's name)
    exhaustive: bool = False                      # every combination: only finite sets, `choice` becomes a grid axis
    takes_grid: bool = True                       # False: `grid` entries are refused
    baseline_in_space: bool = False               # True: the baseline point must lie inside the search space
    searcher: bool = False                        # an algorithm that Tune runs as a Searcher (it learns from results)
    takes_searcher: bool = True                   # a scheduler that can follow a Searcher's suggestions
    exploits: bool = False                        # trials continue from other trials' checkpoints (PBT: orchestrator.search.pbt),
                                                  # which only one-worker trials can (EXPLOITS_ONE_WORKER says why)

    def missing_dependency(self) -> str | None:
        """The package this entry needs and this Python lacks, or None."""
        if self.requires and importlib.util.find_spec(self.module or self.requires) is None:
            return self.requires
        return None


# ------------------------------------------------------------------------------------------------
# Search algorithms


class RandomOptions(Options):
    type: Literal["random"] = "random"


class GridOptions(Options):
    type: Literal["grid"]


class OptunaOptions(Options):
    type: Literal["optuna"]
    n_startup_trials: int = Field(10, ge=0, description="trials sampled at random before TPE models the results "
                                                        "(Optuna's default; the baseline counts as one)")
    multivariate: bool = Field(False, description="model the hyperparameters jointly instead of one by one")


def _variant_generator(options: Options, settings: TuneSettings):
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(points_to_evaluate=list(settings.points) or None, max_concurrent=settings.max_concurrent or 0,
                                 random_state=settings.seed)


def _optuna(options: OptunaOptions, settings: TuneSettings):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=options.n_startup_trials,
                                         multivariate=options.multivariate)
    # metric and mode come from the TuneConfig (set_search_properties)
    return OptunaSearch(sampler=sampler, points_to_evaluate=list(settings.points) or None)


ALGORITHMS: dict[str, Strategy] = {s.name: s for s in (
    Strategy("random", "Tune's random sampler; `grid` entries are crossed with the samples", RandomOptions, _variant_generator),
    Strategy("grid", "every combination of `grid`/`choice` entries (no ranges)", GridOptions, _variant_generator, exhaustive=True),
    Strategy("optuna", "Optuna's TPE (Tree-structured Parzen Estimator): later trials follow the best results so far; "
             "no `grid` entries; the baseline must lie inside the space", OptunaOptions, _optuna, requires="optuna",
             takes_grid=False, baseline_in_space=True, searcher=True),
)}


# ------------------------------------------------------------------------------------------------
# Trial schedulers


class NoScheduler(Options):
    type: Literal["none"] = "none"


class AshaOptions(Options):
    type: Literal["asha"]
    grace_period: int = Field(1, ge=1, description="epochs every trial runs before ASHA may stop it")
    reduction_factor: float = Field(3, gt=1, description="ASHA keeps 1/reduction_factor of the trials at each rung")
    max_t: int | None = Field(None, ge=1, description="ASHA's last rung in epochs (default: the trial's total epochs)")

    def problems(self, epochs: int) -> list[tuple[str, str]]:
        if self.grace_period > epochs:
            return [("grace_period", f"{self.grace_period} epochs is longer than the {epochs} epochs a trial runs")]
        return []


def _fifo(options: NoScheduler, settings: TuneSettings):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _asha(options: AshaOptions, settings: TuneSettings):
    from ray.tune.schedulers import ASHAScheduler

    # metric and mode come from the TuneConfig
    return ASHAScheduler(time_attr="epoch", max_t=options.max_t or settings.epochs, grace_period=options.grace_period,
                         reduction_factor=options.reduction_factor)


def _interval_problems(interval: int, epochs: int) -> list[tuple[str, str]]:
    if interval > epochs:
        return [("perturbation_interval", f"{interval} epochs is longer than the {epochs} epochs a trial runs: no trial "
                                          "would ever exploit another")]
    return []


class PbtOptions(Options):
    type: Literal["pbt"]
    perturbation_interval: int = Field(ge=1, description="epochs between two looks at the population: a trial in the "
                                                          "bottom quantile then continues from a top trial's checkpoint "
                                                          "with mutated values")
    hyperparam_mutations: dict[str, Any] = Field(min_length=1, description="training option (or lambda_cyc, lambda_idt) -> "
                                                 "a list of values or `{choice: [...]}` (a mutation moves to a neighbour "
                                                 "in the list), or a range as in `space` (uniform, loguniform, randint, "
                                                 "quniform: a mutation multiplies by 0.8 or 1.2, which may leave the range); "
                                                 "a trial starts from the space's value, else from one sampled here")
    quantile_fraction: float = Field(0.25, ge=0, le=0.5, description="the bottom fraction of the population exploits the "
                                                                     "top fraction")
    resample_probability: float = Field(0.25, ge=0, le=1, description="chance that a mutation draws a new value instead of "
                                                                      "perturbing the donor's")
    synch: bool = Field(False, description="wait at each look until the whole population has reached it (Tune's synchronous "
                                           "PBT: every trial is paused and restarted from its checkpoint there); the default "
                                           "looks at each trial as it arrives")

    def problems(self, epochs: int) -> list[tuple[str, str]]:
        return _interval_problems(self.perturbation_interval, epochs)

    def searched(self) -> dict[str, tuple[str, Any]]:
        return {name: ("hyperparam_mutations", spec) for name, spec in self.hyperparam_mutations.items()}


def _pbt(options: PbtOptions, settings: TuneSettings):
    from orchestrator.search.distributions import tune_distribution
    from orchestrator.search.population import TaskPopulation

    # A list (or a choice) is a list for Tune: a mutation moves to a neighbour; a range becomes Tune's domain.
    mutations = {name: list(spec) if isinstance(spec, list) else list(spec["choice"]) if "choice" in spec else tune_distribution(spec)
                 for name, spec in options.hyperparam_mutations.items()}
    # The epoch's own value, not the best so far: PBT compares where the trials are now. Checkpoints every
    # perturbation_interval epochs (orchestrator.search.pbt) give the exploiting trial its donor's state.
    return TaskPopulation(time_attr="epoch", metric=settings.score or settings.metric, mode=settings.mode,
                                   perturbation_interval=options.perturbation_interval, hyperparam_mutations=mutations,
                                   quantile_fraction=options.quantile_fraction,
                                   resample_probability=options.resample_probability, synch=options.synch, log_config=False)


class Pb2Options(Options):
    type: Literal["pb2"]
    perturbation_interval: int = Field(ge=1, description="epochs between two looks at the population (as with pbt)")
    hyperparam_bounds: dict[str, list[float]] = Field(min_length=1, description="training option (or lambda_cyc, lambda_idt) "
                                                      "-> [low, high]: a Gaussian-process bandit picks the exploiting "
                                                      "trial's new value in that range from the population's results; "
                                                      "a trial starts from the space's value, else a uniform draw")
    quantile_fraction: float = Field(0.25, ge=0, le=0.5, description="the bottom fraction of the population exploits the "
                                                                     "top fraction")
    synch: bool = Field(False, description="wait at each look for the whole population (as with pbt)")

    def problems(self, epochs: int) -> list[tuple[str, str]]:
        return _interval_problems(self.perturbation_interval, epochs)

    def searched(self) -> dict[str, tuple[str, Any]]:
        return {name: ("hyperparam_bounds", {"uniform": bounds}) for name, bounds in self.hyperparam_bounds.items()}


def _pb2(options: Pb2Options, settings: TuneSettings):
    from orchestrator.search.pb2 import TaskPB2

    return TaskPB2(time_attr="epoch", metric=settings.score or settings.metric, mode=settings.mode,
                   perturbation_interval=options.perturbation_interval, hyperparam_bounds=options.hyperparam_bounds,
                   quantile_fraction=options.quantile_fraction, synch=options.synch, log_config=False)


EXPLOITS_ONE_WORKER = ("an exploiting trial continues from its donor's checkpoint, and a trial of several workers is a Ray "
                       "Train run, which always continues from its own")

SCHEDULERS: dict[str, Strategy] = {s.name: s for s in (
    Strategy("none", "every trial runs to its last epoch", NoScheduler, _fifo),
    Strategy("asha", "ASHA (asynchronous successive halving) stops the trials whose best so far is poor at each rung; "
             "it compares only trials of the same task", AshaOptions, _asha),
    Strategy("pbt", "population-based training: every `perturbation_interval` epochs the task's worst trials continue "
             "from a best trial's checkpoint with mutated hyperparameters (lineage and per-epoch values in MLflow); "
             "one-worker trials, algorithm random or grid", PbtOptions, _pbt, takes_searcher=False, exploits=True),
    Strategy("pb2", "population-based bandits (PB2): PBT whose new values come from a Gaussian-process model of the "
             "population's results instead of random mutations; ranges only", Pb2Options, _pb2, requires="scikit-learn", module="sklearn",
             takes_searcher=False, exploits=True),
)}


# ------------------------------------------------------------------------------------------------
# The manifest fields


def _by_name(value: Any) -> Any:
    """`optuna` is short for `{type: optuna}`."""
    return {"type": value} if isinstance(value, str) else value


def _field_type(table: dict[str, Strategy]):
    union = reduce(or_, (s.options for s in table.values()))  # Options1 | Options2 | ...
    return Annotated[union, Field(discriminator="type"), BeforeValidator(_by_name)]


AlgorithmField = _field_type(ALGORITHMS)
SchedulerField = _field_type(SCHEDULERS)
TABLES = {"algorithm": ALGORITHMS, "scheduler": SCHEDULERS}  # manifest field (under `search`) -> its table


def build(table: dict[str, Strategy], options: Options, settings: TuneSettings):
    return table[options.type].build(options, settings)


# ------------------------------------------------------------------------------------------------
# docs/manifest.md's tables


def markdown() -> str:
    """The algorithm and scheduler tables of docs/manifest.md, generated from the entries."""
    lines = []
    for title, field_name, table in (("Search algorithms", "algorithm", ALGORITHMS), ("Schedulers", "scheduler", SCHEDULERS)):
        lines += [f"**{title}** (`search.{field_name}`):", "", "| name | what it does | options | needs |", "| --- | --- | --- | --- |"]
        for strategy in table.values():
            options = [f"`{name}` ({'required' if info.is_required() else _default(info.default)}): {info.description}"
                       for name, info in strategy.options.model_fields.items() if name != "type"]
            needs = f"`{strategy.requires}` (installed by `make setup`)" if strategy.requires else "-"
            lines.append(f"| `{strategy.name}` | {strategy.summary} | {'<br>'.join(options) or '-'} | {needs} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _default(value: Any) -> str:
    return "default: none" if value is None else f"default: {str(value).lower() if isinstance(value, bool) else value}"


if __name__ == "__main__":
    print(markdown(), end="")
