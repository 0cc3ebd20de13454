"""Turn a task's search settings into Ray Tune objects: param space, search algorithm, scheduler."""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from cyclegan.metric_names import EVAL_METRICS, base_metric

from .manifest import TaskPlan


def tune_distribution(spec: dict[str, Any]):
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        return tune.choice(args)
    if kind == "grid":
        return tune.grid_search(args)
    if kind == "uniform":
        return tune.uniform(*args)
    if kind == "loguniform":
        return tune.loguniform(*args)
    if kind == "randint":
        return tune.randint(args[0], args[1] + 1)  # the manifest's upper bound is inclusive
    if kind == "quniform":
        return tune.quniform(*args)
    raise ValueError(f"unknown distribution {kind!r}")


def param_space(plan: TaskPlan) -> dict[str, Any]:
    return {name: tune_distribution(spec) for name, spec in plan.space.items()}


def search_algorithm(plan: TaskPlan):
    """None means Tune's default: random sampling, with grid entries crossed."""
    if plan.search.algorithm == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(metric=plan.search.metric, mode=plan.search.resolved_mode, seed=plan.search.seed)
    return None


def scheduler(plan: TaskPlan, total_epochs: int):
    settings = plan.search.scheduler
    if settings.type == "asha":
        # metric and mode come from the TuneConfig
        return ASHAScheduler(time_attr="epoch", max_t=settings.max_t or total_epochs, grace_period=settings.grace_period,
                             reduction_factor=settings.reduction_factor)
    return FIFOScheduler()


def evaluation_options(plan: TaskPlan) -> dict[str, Any]:
    """Training options the task's metric needs: an evaluation metric is only reported when the test split
    is evaluated, so evaluate every epoch, including that metric."""
    base = base_metric(plan.search.metric)
    if base not in EVAL_METRICS:
        return {}
    metrics = [m.strip() for m in str(plan.train.get("eval_metrics", "")).split(",") if m.strip()]
    if base not in metrics:
        metrics.append(base)
    return {"eval_freq": 1, "eval_metrics": ",".join(metrics)}
