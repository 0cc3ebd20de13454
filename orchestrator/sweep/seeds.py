"""`search.repeats: k`: every configuration trained with k seeds, ranked by the mean of its seeds.

A seed's luck is not a hyperparameter's merit: with repeats, a task ranks *configurations* (the
trials' hyperparameters without `seed`) by the mean of their seeds' best values, and each mean gets
a 95 % interval that covers both sources of noise:

- the seed-to-seed spread: Student's t interval of the mean of the k values (wide for small k:
  two seeds say little), never narrower than the range of the values themselves;
- the test images: each seed's own bootstrap interval (cyclegan.scores), averaged.

The interval is the hull of the two. No Ray, no torch: the results file is read without either.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import t as student_t

from orchestrator.config.options import SEED_KEY

LEVEL = 0.95


@dataclass
class SeedMean:
    """One configuration over its seeds: the mean, its interval, the values it came from."""

    value: float
    low: float
    high: float
    values: list[float] = field(default_factory=list)


def seed_mean(
    values: Sequence[float], intervals: Sequence[Sequence[float] | None] = ()
) -> SeedMean:
    """The mean of `values` (one per seed) with its interval (see the module docstring);
    `intervals`: each seed's [low, high] on the test images, where measured."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no seed has a value")
    k, mean = len(values), math.fsum(values) / len(values)
    low, high = min(values), max(values)
    if k > 1:
        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (k - 1))
        half = student_t.ppf(0.5 + LEVEL / 2, k - 1) * sd / math.sqrt(k)
        low, high = min(low, mean - half), max(high, mean + half)
    measured = [ci for ci in intervals if ci and all(_finite(c) for c in ci)]
    if measured:
        low = min(low, math.fsum(ci[0] for ci in measured) / len(measured))
        high = max(high, math.fsum(ci[1] for ci in measured) / len(measured))
    return SeedMean(mean, low, high, values)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def configuration_key(params: dict[str, Any]) -> str:
    """A trial's configuration: its hyperparameters without the seed (10 and 10.0 the same)."""
    same = {k: float(v) if _finite(v) and not isinstance(v, bool) else v for k, v in params.items()}
    same.pop(SEED_KEY, None)
    return json.dumps(same, sort_keys=True, default=str)


def best_configuration(trials: Sequence[Any], mode: str) -> tuple[list[dict[str, Any]], Any | None]:
    """Every configuration's seeds and mean, best first, and the trial to keep of the best one
    (its best seed: whose generators are registered).

    `trials`: TrialRecords, those of ranked statuses with a value; each configuration's entry is
    {"params", "trials", "mean", "ci", "values"}."""
    groups: dict[str, list[Any]] = {}
    for trial in trials:
        groups.setdefault(configuration_key(trial.params), []).append(trial)
    sign = 1.0 if mode == "min" else -1.0
    out = []
    for members in groups.values():
        mean = seed_mean([t.metric for t in members], [t.metric_ci for t in members])
        params = {k: v for k, v in members[0].params.items() if k != SEED_KEY}
        out.append(
            {
                "params": params,
                "trials": [t.trial_id for t in members],
                "mean": mean.value,
                "ci": [mean.low, mean.high],
                "values": mean.values,
            }
        )
    out.sort(key=lambda c: sign * c["mean"])  # stable: ties go to the earlier configuration
    if not out:
        return out, None
    best = [t for t in trials if t.trial_id in out[0]["trials"]]
    return out, (min if mode == "min" else max)(best, key=lambda t: t.metric)


def mean_text(configuration: dict[str, Any]) -> str:
    """'40.3 [33.0, 47.5] mean of 2 seeds': a configuration of `best_configuration`."""
    low, high = configuration["ci"]
    return (
        f"{configuration['mean']:.4g} [{low:.4g}, {high:.4g}] mean of "
        f"{len(configuration['values'])} seeds"
    )
