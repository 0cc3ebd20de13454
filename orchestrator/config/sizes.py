"""The options taken together: a task's constant options and every combination of its searched size
options.

TrainConfig checks the image sizes against the networks, and the crop against the load size; a
search over those options is checked combination by combination, before anything starts. The first
combination builds the task's TrainConfig (every rule). The others differ from it only in size
options whose every value is valid alone (orchestrator.config.space checks them), so the only rules
that can fail for them are the two between size options, `crop_problem` and `size_problem`: a
grid of 2,000 combinations costs one TrainConfig and 2,000 small checks, and reports exactly what a
TrainConfig per combination would.
"""

from __future__ import annotations

import itertools
import re
from types import SimpleNamespace
from typing import Any

from cyclegan.config import TrainConfig, crop_problem, size_problem
from cyclegan.errors import UserError
from orchestrator.config.aliases import expand_aliases, fields_of
from orchestrator.config.problems import Problem
from orchestrator.config.space import Distribution

# Options the networks' size rules depend on: a search over them is checked combination by
# combination.
SIZE_OPTIONS = ("crop_size", "load_size", "preprocess", "netG", "netD", "n_layers_D")
MAX_COMBINATIONS = 2000


def combined_config(
    prefix: str, train: dict[str, Any], set_in: dict[str, str], space: dict[str, Any], where: str
) -> tuple[TrainConfig | None, list[Problem]]:
    """The task's TrainConfig (constant options, the first combination of the searched size options)
    and what TrainConfig says of the options together, for the constants and every combination.

    Args:
        prefix: the task's field path (`tasks[0]`).
        train: the task's valid constant options, by TrainConfig field.
        set_in: training option -> the field path that set it.
        space: the task's valid search-space entries (constants and distributions).
        where: the search space's field path.
    """
    constants = expand_aliases({k: v for k, v in space.items() if not isinstance(v, dict)})
    axes = {
        k: Distribution.of(v).values()
        for k, v in space.items()
        if isinstance(v, dict) and fields_of(k)[0] in SIZE_OPTIONS
    }
    axes = {k: v for k, v in axes.items() if v}
    combos = itertools.islice(itertools.product(*axes.values()), MAX_COMBINATIONS)
    sampled = dict(zip(axes, next(combos)))

    def problem(option: str, detail: str, sampled: dict[str, Any]) -> Problem:
        if option in axes or option in constants:
            path = f"{where}.{option}"
        else:
            path = set_in.get(option, f"{prefix}.train")
        chosen = (
            f" (when the search picks {', '.join(f'{k}={v}' for k, v in sampled.items())})"
            if sampled
            else ""
        )
        return Problem(path, detail + chosen)

    try:
        config = TrainConfig(**{**train, **constants, **sampled})
    except (UserError, TypeError, ValueError) as err:
        message = str(err)
        option = re.match(r"^--(\w+): ", message)
        return None, [
            problem(
                option.group(1) if option else "",
                message[option.end() :] if option else message,
                sampled,
            )
        ]
    fixed = {name: getattr(config, name) for name in SIZE_OPTIONS}
    for combo in combos:
        sampled = dict(zip(axes, combo))
        sizes = SimpleNamespace(**{**fixed, **sampled})
        found = crop_problem(sizes) or size_problem(sizes)
        if found:
            return None, [problem(*found, sampled)]
    return config, []
