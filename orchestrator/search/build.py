"""Turn a task's search settings into Ray Tune objects: param space, search algorithm, scheduler,
guard.

Tune ranks trials by `best_<metric>`, each trial's best value so far (orchestrator.storage.best):
the search algorithm learns from a trial's best epoch, ASHA compares trials by their best at each
rung. The baseline is Tune's `points_to_evaluate` (the first trial) when it is a trial of its own;
Tune counts such a point as one of `num_samples`, so the sweep asks for one sample more.
"""

from __future__ import annotations

from typing import Any

from orchestrator.config.plan import TaskPlan
from orchestrator.search.algorithms import ALGORITHMS
from orchestrator.search.distributions import tune_distribution
from orchestrator.search.guards import SweepGuard
from orchestrator.search.schedulers import SCHEDULERS
from orchestrator.search.strategy import TuneSettings, build
from orchestrator.storage.best import best_key


def param_space(plan: TaskPlan) -> dict[str, Any]:
    return {name: tune_distribution(spec) for name, spec in plan.space.items()}


def tune_metric(plan: TaskPlan) -> str:
    """What Tune, the search algorithm and the scheduler rank by."""
    return best_key(plan.search.metric)


def tune_num_samples(plan: TaskPlan) -> int:
    """Tune's num_samples: the sampled trials (or grid repeats), plus the baseline point when it is
    a trial of its own."""
    return plan.search.num_samples + int(plan.baseline_added)


def settings(plan: TaskPlan, total_epochs: int) -> TuneSettings:
    return TuneSettings(
        metric=tune_metric(plan),
        mode=plan.search.resolved_mode,
        epochs=total_epochs,
        seed=plan.search.seed,
        points=[dict(plan.baseline)] if plan.baseline_added else [],
        max_concurrent=plan.search.max_concurrent_trials,
        score=plan.search.metric,
    )


def search_algorithm(plan: TaskPlan, total_epochs: int):
    return build(ALGORITHMS, plan.search.algorithm, settings(plan, total_epochs))


def scheduler(plan: TaskPlan, total_epochs: int):
    return build(SCHEDULERS, plan.search.scheduler, settings(plan, total_epochs))


def guard(plan: TaskPlan) -> SweepGuard:
    search = plan.search
    return SweepGuard(
        search.metric,
        search.resolved_mode,
        plan.baseline,
        divergence_factor=search.divergence_factor,
        time_budget_s=search.time_budget_s,
        max_failed_trials=search.max_failed_trials,
    )
