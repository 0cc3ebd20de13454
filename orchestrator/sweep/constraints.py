"""`search.constraints`: conditions the best trial must meet besides ranking first.

"The best trial by FID whose structure distance is within 1.2x the baseline's" is

    search:
      metric: fid
      constraints: [{metric: dino_struct, baseline_factor: 1.2}]

Each constraint is checked on a trial's values at the epoch that ranks it (its best epoch by the
task's metric, as its history recorded them): `max` and `min` bound the value; `baseline_factor`
bounds it by the baseline trial's value at the baseline's best epoch, in the metric's direction
(for a metric to minimise, value <= factor x baseline; to maximise, value >= baseline / factor).
A trial that breaks one is not ranked (it keeps its status and its record, with why); a trial
without the metric's value breaks it too. Without a baseline value, a `baseline_factor`
constraint cannot be checked, and the task's summary says so.
"""

from __future__ import annotations

from typing import Any

from cyclegan.metric_names import mode as metric_mode


def value_at_best(trial: Any, metric: str) -> float | None:
    """`metric` in `trial`'s history at its best epoch."""
    row = next((r for r in trial.history if r.get("epoch") == trial.best_epoch), {})
    value = row.get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def describe(constraint: Any) -> str:
    if constraint.baseline_factor is not None:
        return f"{constraint.metric} within {constraint.baseline_factor:g}x the baseline's"
    if constraint.max is not None:
        return f"{constraint.metric} <= {constraint.max:g}"
    return f"{constraint.metric} >= {constraint.min:g}"


def broken(trial: Any, constraints: list, baseline: Any | None) -> str | None:
    """Why `trial` breaks one of `constraints` (None: it meets them all, or only cannot be checked
    for lack of a baseline value)."""
    for c in constraints:
        value = value_at_best(trial, c.metric)
        if value is None:
            return f"breaks {describe(c)}: no {c.metric} at its best epoch"
        bound, low = c.max, False
        if c.min is not None:
            bound, low = c.min, True
        if c.baseline_factor is not None:
            reference = value_at_best(baseline, c.metric) if baseline else None
            if reference is None:
                continue
            low = metric_mode(c.metric) == "max"
            bound = reference / c.baseline_factor if low else reference * c.baseline_factor
        if (value < bound) if low else (value > bound):
            return f"breaks {describe(c)}: {c.metric} {value:.4g} {'<' if low else '>'} {bound:.4g}"
    return None


def unchecked(constraints: list, baseline: Any | None) -> list[str]:
    """The baseline_factor constraints that cannot be checked: no baseline value."""
    return [
        describe(c)
        for c in constraints
        if c.baseline_factor is not None
        and (baseline is None or value_at_best(baseline, c.metric) is None)
    ]


def summary_lines(task: str, outcome: dict | None) -> list[str]:
    """What the summary says of a task's constraints (`TaskResult.constraints`)."""
    outcome = outcome or {}
    lines = [
        f"{task}: trial {t} not ranked: {why}" for t, why in outcome.get("unranked", {}).items()
    ]
    return lines + [
        f"{task}: not checked (no baseline value): {c}" for c in outcome.get("unchecked", [])
    ]
