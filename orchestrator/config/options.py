"""A manifest's training options: TrainConfig's fields, checked one value at a time, by their real
types.

What the options say together (crop vs load size, sizes the networks take) is checked per task, for
every combination of the searched size options (orchestrator.config.plan).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, get_type_hints

from cyclegan.config import TrainConfig, option_problem
from orchestrator.config.aliases import ALIASES, expand_aliases, fields_of
from orchestrator.config.problems import did_you_mean, short

TRAIN_FIELDS = {f.name: f for f in fields(TrainConfig)}
TRAIN_TYPES: dict[str, type] = get_type_hints(TrainConfig)
# Set by the orchestrator itself, never by a manifest.
SEED_KEY = "seed"  # the training option each of search.repeats' trials sets (TrainConfig.seed)
RESERVED_TRAIN_FIELDS = ("dataroot", "name", "checkpoints_dir", "continue_train")

# What YAML may give for each type (an int is a fine float), and how a message names the type.
_ACCEPTED: dict[type, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    str: (str,),
    bool: (bool,),
}
_NAMED = {int: "an integer", float: "a number", str: "a str", bool: "a bool"}
# A configuration in which any single valid option value validates (sizes are checked in
# combination).
_BASE_TRAIN = {"load_size": 4096, "crop_size": 1}


def is_whole_number(name: str) -> bool:
    """Whether manifest name `name` sets an integer training option."""
    return TRAIN_TYPES.get(fields_of(name)[0]) is int


def check_train_value(name: str, value: Any) -> str | None:
    """None if `value` is a valid value for training option `name`, else why not."""
    target = fields_of(name)[0]
    if target not in TRAIN_FIELDS:
        return f"unknown training option{did_you_mean(name, list(TRAIN_FIELDS) + list(ALIASES))}"
    if target in RESERVED_TRAIN_FIELDS:
        return "is set by the orchestrator; remove it"
    expected = TRAIN_TYPES[target]
    kinds = _ACCEPTED[expected]
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        return f"must be {_NAMED[expected]}, got {short(value)}"
    problem = option_problem({**_BASE_TRAIN, **expand_aliases({name: value})}, sizes=False)
    return problem[1] if problem else None


def train_options(sampled: Mapping[str, Any]) -> dict[str, Any]:
    """One sample of the search space as training options, with TrainConfig's names and types: what
    a trial trains with, and what MLflow records of it (its run, its task's run, the registry)."""
    values = {}
    for target, value in expand_aliases(sampled).items():
        # quniform samples whole numbers as floats (256.0); validation allows it only for whole q
        # and bounds
        integral = (
            TRAIN_TYPES.get(target) is int and isinstance(value, float) and value.is_integer()
        )
        values[target] = int(value) if integral else value
    return values


def total_epochs(train: Mapping[str, Any]) -> int:
    """A trial's length as the options set it (TrainConfig's defaults for the rest): what the
    strategies' checks need before the task's TrainConfig is built (TaskPlan.total_epochs after)."""
    return sum(
        train.get(name, TRAIN_FIELDS[name].default) for name in ("n_epochs", "n_epochs_decay")
    )
