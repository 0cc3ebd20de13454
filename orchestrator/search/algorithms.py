"""The search algorithms a manifest can name (`search.algorithm`): one entry each.

Adding one is an `Options` subclass (`type: Literal["name"]`), a builder that imports Ray (and its
package) itself, and one `Strategy` in ALGORITHMS (orchestrator.search.strategy says what an entry
holds).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from orchestrator.search.strategy import Options, Strategy, TuneSettings, by_name, field_type


class RandomOptions(Options):
    type: Literal["random"] = "random"


class GridOptions(Options):
    type: Literal["grid"]


class OptunaOptions(Options):
    type: Literal["optuna"]
    n_startup_trials: int = Field(
        10,
        ge=0,
        description="trials sampled at random before TPE models the results "
        "(Optuna's default; the baseline counts as one)",
    )
    multivariate: bool = Field(
        False, description="model the hyperparameters jointly instead of one by one"
    )


def _variant_generator(options: Options, settings: TuneSettings):
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(
        points_to_evaluate=list(settings.points) or None,
        max_concurrent=settings.max_concurrent or 0,
        random_state=settings.seed,
    )


def _optuna(options: OptunaOptions, settings: TuneSettings):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(
        seed=settings.seed,
        n_startup_trials=options.n_startup_trials,
        multivariate=options.multivariate,
    )
    # metric and mode come from the TuneConfig (set_search_properties)
    return OptunaSearch(sampler=sampler, points_to_evaluate=list(settings.points) or None)


ALGORITHMS: dict[str, Strategy] = by_name(
    Strategy(
        "random",
        "Tune's random sampler; `grid` entries are crossed with the samples",
        RandomOptions,
        _variant_generator,
    ),
    Strategy(
        "grid",
        "every combination of `grid`/`choice` entries (no ranges)",
        GridOptions,
        _variant_generator,
        exhaustive=True,
    ),
    Strategy(
        "optuna",
        "Optuna's TPE (Tree-structured Parzen Estimator): later trials follow the best results so "
        "far; "
        "no `grid` entries; the baseline must lie inside the space",
        OptunaOptions,
        _optuna,
        requires="optuna",
        takes_grid=False,
        baseline_in_space=True,
        searcher=True,
    ),
)

AlgorithmField = field_type(ALGORITHMS)
