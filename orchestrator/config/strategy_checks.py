"""What a task's chosen search algorithm and scheduler say of it: the space they can sample, the
workers their trials may have, the trial length their options need, the packages they need.

The rules themselves live in the entries of orchestrator.search's tables; this module asks them,
with the field path where the user wrote each setting.
"""

from __future__ import annotations

from typing import Any

from orchestrator.config.options import SEED_KEY, total_epochs
from orchestrator.config.problems import Problem, short
from orchestrator.config.resources import Resources
from orchestrator.config.schema import Search, Task
from orchestrator.config.space import DISTRIBUTIONS, space_problems
from orchestrator.search import ALGORITHMS, EXPLOITS_ONE_WORKER, SCHEDULERS, TABLES


def search_field(prefix: str, task: Task, name: str) -> str:
    """The path of search field `name` as the user wrote it: the task's own, else the shared one."""
    return f"{prefix}.search.{name}" if name in task.search else f"search.{name}"


def strategy_problems(
    prefix: str, task: Task, search: Search, train: dict[str, Any], resources: Resources | None
) -> list[Problem]:
    """What the chosen algorithm and scheduler say of the space, the trial length, the workers and
    this Python.

    Args:
        prefix: the task's field path (`tasks[2]`).
        task: the task as written (where its own search settings are).
        search: the task's search settings, the shared ones merged in.
        train: the task's constant training options.
        resources: what each of its trials reserves (None when that section is invalid).
    """
    out = []
    algorithm, scheduler = ALGORITHMS[search.algorithm.type], SCHEDULERS[search.scheduler.type]
    if algorithm.searcher and not scheduler.takes_searcher:
        out.append(
            Problem(
                search_field(prefix, task, "algorithm"),
                f"scheduler {scheduler.name} cannot follow the suggestions of "
                f"algorithm {algorithm.name}: use algorithm random or grid ({scheduler.name} "
                f"explores by itself)",
            )
        )
    if search.repeats > 1 and (scheduler.exploits or SEED_KEY in search.space):
        why = (
            f"scheduler {scheduler.name} copies weights between trials"
            if scheduler.exploits
            else "the space searches the seed itself"
        )
        out.append(
            Problem(
                search_field(prefix, task, "repeats"),
                f"repeats {search.repeats}: {why}; leave repeats at 1 or "
                + ("choose another scheduler" if scheduler.exploits else "take seed out of space"),
            )
        )
    if scheduler.exploits and resources is not None and resources.workers > 1:
        where = (
            f"{prefix}.resources.workers"
            if "workers" in task.resources
            else "defaults.resources.workers"
        )
        out.append(
            Problem(
                where,
                f"{resources.workers} workers with scheduler {scheduler.name} "
                f"({search_field(prefix, task, 'scheduler')}): "
                f"{scheduler.name} runs trials of one worker only ({EXPLOITS_ONE_WORKER}); "
                "set workers: 1, or choose another scheduler",
            )
        )
    ranges = [
        k
        for k, s in search.space.items()
        if isinstance(s, dict) and next(iter(s), None) not in ("choice", "grid")
    ]
    if algorithm.exhaustive and ranges:
        out.append(
            Problem(
                search_field(prefix, task, "algorithm"),
                f"{algorithm.name} search cannot sample ranges ({', '.join(ranges)}); use "
                f"grid/choice lists or algorithm random",
            )
        )
    if not algorithm.takes_grid and any(
        isinstance(s, dict) and "grid" in s for s in search.space.values()
    ):
        out.append(
            Problem(
                search_field(prefix, task, "algorithm"),
                f"{algorithm.name} cannot take grid entries; use choice instead",
            )
        )
    epochs = total_epochs(train)
    for name, options in (("algorithm", search.algorithm), ("scheduler", search.scheduler)):
        strategy = TABLES[name][options.type]
        where = search_field(prefix, task, name)
        if missing := strategy.missing_dependency():
            out.append(
                Problem(
                    where,
                    f"{strategy.name} needs the Python package '{missing}', which is not installed "
                    f"here: "
                    f"pip install {missing} (make setup installs it), or choose another {name}",
                )
            )
        out += [Problem(f"{where}.{option}", text) for option, text in options.problems(epochs)]
        for key, (option, spec) in options.searched().items():
            out += _searched_problems(f"{where}.{option}", key, spec)
    return out


def _searched_problems(where: str, key: str, spec: Any) -> list[Problem]:
    """A scheduler's own search entry (e.g. a PBT mutation): a list of values, or a distribution
    other than grid."""
    if isinstance(spec, dict) and "grid" in spec:
        return [
            Problem(
                f"{where}.{key}.grid",
                "a scheduler's entries are not grid axes; use a list or choice",
            )
        ]
    if not isinstance(spec, (list, dict)):
        return [
            Problem(
                f"{where}.{key}",
                f"must be a list of values or a distribution "
                f"({', '.join(d for d in DISTRIBUTIONS if d != 'grid')}), "
                f"got {short(spec)}",
            )
        ]
    if isinstance(spec, list):  # checked as a choice, reported at the list's own path
        return [
            Problem(p.path.replace(f"{where}.{key}.choice", f"{where}.{key}"), p.message)
            for p in space_problems(where, key, {"choice": spec})
        ]
    return space_problems(where, key, spec)
