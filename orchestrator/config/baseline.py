"""The paper's baseline in every sweep: the task's configuration with the paper's values of the
searched options.

The paper's values are TrainConfig's defaults (λ = 10, identity 0.5·λ, pool 50, lr 2e-4 …):
DESIGN.md requires them to be. A task's own constant options win ("unless the task's own defaults
say otherwise"): `lambda_identity: 0.0` in a task's `train` makes its baseline run without the
identity loss.

orchestrator.config.plan computes the point (`TaskPlan.baseline`); this module tells trials apart.
The baseline trial is the first trial Tune created whose configuration is the baseline point: Tune
evaluates `points_to_evaluate` first, and a grid that already holds the point runs it once, as one
of its own combinations. (Trial ids cannot tell the order: a search algorithm's trials get random
ids; Tune's trial lists, its callbacks' and its results', are in the order of creation.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def same_value(a: Any, b: Any) -> bool:
    """Equal as hyperparameter values: 10 and 10.0 are the same λ."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def matches(config: dict[str, Any], point: dict[str, Any]) -> bool:
    """Whether a trial's sampled `config` is the baseline `point`."""
    return all(name in config and same_value(config[name], value) for name, value in point.items())


def in_values(value: Any, values: Iterable[Any]) -> bool:
    return any(same_value(value, v) for v in values)


def baseline_trial(
    trials: Iterable[tuple[str, dict[str, Any]]], point: dict[str, Any] | None
) -> str | None:
    """The id of the baseline among (trial id, config) pairs in Tune's order of creation: the first
    whose config is `point`."""
    if point is None:
        return None
    return next((trial_id for trial_id, config in trials if matches(config or {}, point)), None)
