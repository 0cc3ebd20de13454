"""The search space's distributions: one registry of kinds, each with its checks, values and Tune
form.

A manifest writes a searched option as `{kind: args}`: `{choice: [a, b]}`, `{uniform: [low, high]}`,
`{quniform: [low, high, q]}`... `KINDS` says, per kind, what its arguments are, which values it can
give (for the combination checks, a grid's size and a baseline inside the space) and which Ray Tune
function samples it (orchestrator.search.distributions builds it from here). A new kind is one
entry.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.config.baseline import in_values
from orchestrator.config.options import check_train_value, is_whole_number
from orchestrator.config.problems import Problem, did_you_mean

LIMIT = 1000  # values of one distribution that the combination checks try, evenly spread


def _multiples(args: Sequence[float], limit: int) -> list[float]:
    """Ray's quniform gives the multiples of q within the bounds (the two ends only, when there are
    far too many)."""
    low, high, q = args
    first, last = math.ceil(low / q), math.floor(high / q)
    return (
        [k * q for k in range(first, last + 1)]
        if last - first < 10 * limit
        else [k * q for k in (first, last)]
    )


def _low_above_zero(args: Sequence[float]) -> str | None:
    return "bounds must be > 0" if args[0] <= 0 else None


def _integer_bounds(args: Sequence[float]) -> str | None:
    return "bounds must be integers" if not all(isinstance(a, int) for a in args) else None


def _distinct(args: Sequence) -> int:
    return sum(not in_values(v, args[:i]) for i, v in enumerate(args))


def _count_multiples(args: Sequence[float]) -> int:
    return math.floor(args[1] / args[2]) - math.ceil(args[0] / args[2]) + 1


def _positive_q(args: Sequence[float]) -> str | None:
    if not args[2] > 0:
        return f"q ({args[2]}) must be > 0"
    if not _multiples(args, LIMIT):
        return f"no multiple of q ({args[2]}) lies between {args[0]} and {args[1]}"
    return None


@dataclass(frozen=True)
class Kind:
    """One kind of distribution. `arity`: how many numbers it takes (None: a non-empty list of
    values)."""

    name: str
    arity: int | None
    tune: str  # the ray.tune function that samples it
    values: Callable[[Sequence, int], Sequence] | None = (
        None  # (args, limit) -> what it gives; None: a continuous range
    )
    check: Callable[[Sequence], str | None] | None = None  # a rule of its own on the arguments
    tune_args: Callable[[Sequence], tuple] = tuple  # the arguments of `tune`
    grid_axis: bool = False  # every value is a trial (crossed with the other axes)
    count: Callable[[Sequence], int] | None = None  # how many distinct values; None: continuous

    @property
    def listed(self) -> bool:
        """Its arguments are the values themselves (choice, grid), not bounds."""
        return self.arity is None


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "choice",
            None,
            "choice",
            values=lambda args, limit: list(args),
            tune_args=lambda args: (args,),
            count=_distinct,
        ),
        Kind(
            "grid",
            None,
            "grid_search",
            values=lambda args, limit: list(args),
            tune_args=lambda args: (args,),
            grid_axis=True,
            count=_distinct,
        ),
        Kind("uniform", 2, "uniform"),
        Kind("loguniform", 2, "loguniform", check=_low_above_zero),
        # the manifest's upper bound is inclusive, Tune's is not
        Kind(
            "randint",
            2,
            "randint",
            values=lambda args, limit: range(args[0], args[1] + 1),
            check=_integer_bounds,
            tune_args=lambda args: (args[0], args[1] + 1),
            count=lambda args: args[1] - args[0] + 1,
        ),
        Kind(
            "quniform",
            3,
            "quniform",
            values=_multiples,
            check=_positive_q,
            count=_count_multiples,
        ),
    )
}
DISTRIBUTIONS = tuple(KINDS)


@dataclass(frozen=True)
class Distribution:
    """One checked search-space entry: its kind and its arguments."""

    kind: Kind
    args: list

    @classmethod
    def of(cls, spec: dict[str, Any]) -> Distribution:
        """`{kind: args}` as a Distribution (ValueError for an unknown kind)."""
        name, args = next(iter(spec.items()))
        if name not in KINDS:
            raise ValueError(f"unknown distribution {name!r}")
        return cls(KINDS[name], args)

    def values(self, limit: int = LIMIT) -> list | None:
        """The values it can give (at most about `limit` of them, evenly spread), or None for the
        continuous ones."""
        if self.kind.values is None:
            return None
        values = self.kind.values(self.args, limit)
        step = max(1, len(values) // limit)
        return [values[i] for i in range(0, len(values), step)] + (
            [values[-1]] if len(values) > 1 and (len(values) - 1) % step else []
        )

    def contains(self, value: Any) -> bool:
        """Whether `value` lies in the space: one of its values, or within its bounds."""
        if self.kind.listed:
            return in_values(value, self.args)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.args[0] <= value <= self.args[1]

    def size(self) -> int | None:
        """How many distinct values it gives; None for the continuous ones."""
        return None if self.kind.count is None else self.kind.count(self.args)

    def gives(self, value: Any) -> bool:
        """Whether a sample can be exactly `value` (a continuous range: any value inside it)."""
        if not self.contains(value):
            return False
        if self.kind.listed or self.kind.count is None:
            return True
        step = self.args[2] if len(self.args) == 3 else 1  # randint, quniform: multiples of a step
        return math.isclose(value / step, round(value / step), abs_tol=1e-9)


def check_distribution(name: str, spec: Any) -> list[str]:
    """Problems with one search-space entry (constants are checked as training values)."""
    if not isinstance(spec, dict):
        problem = check_train_value(name, spec)
        return [problem] if problem else []
    if len(spec) != 1 or next(iter(spec)) not in KINDS:
        keys = ", ".join(map(str, spec)) or "nothing"
        return [
            f"a distribution is one of {', '.join(DISTRIBUTIONS)} (got "
            f"{keys}){did_you_mean(str(next(iter(spec), '')), DISTRIBUTIONS)}"
        ]
    kind_name, args = next(iter(spec.items()))
    kind = KINDS[kind_name]
    if kind.listed:
        if not isinstance(args, list) or not args:
            return [f"{kind_name}: must be a non-empty list of values"]
        return [
            f"{kind_name}[{i}]: {p}"
            for i, v in enumerate(args)
            if (p := check_train_value(name, v))
        ]
    arity = kind.arity
    if (
        not isinstance(args, list)
        or len(args) != arity
        or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
    ):
        return [
            f"{kind_name}: must be a list of {arity} numbers "
            f"({'[low, high, q]' if arity == 3 else '[low, high]'})"
        ]
    if not all(math.isfinite(a) for a in args):
        return [f"{kind_name}: must be finite numbers, got {args}"]
    low, high = args[0], args[1]
    if not low < high:
        return [f"{kind_name}: low ({low}) must be below high ({high})"]
    if kind.check and (problem := kind.check(args)):
        return [f"{kind_name}: {problem}"]
    if is_whole_number(name) and (
        kind.values is None or not all(float(a).is_integer() for a in args)
    ):
        return [
            f"{kind_name}: {name} is a whole number, and this samples fractions; use randint, "
            f"quniform with whole numbers, or choice"
        ]
    return [f"{kind_name}: {p}" for v in (low, high) if (p := check_train_value(name, v))]


_DISTRIBUTION_PATH = re.compile(rf"^({'|'.join(DISTRIBUTIONS)})(\[\d+\])?$")


def space_problems(where: str, key: str, spec: Any) -> list[Problem]:
    """`check_distribution`'s findings at their paths: `search.space.lr.uniform`,
    `...pool_size.choice[1]`."""
    out = []
    for p in check_distribution(key, spec):
        sub, sep, message = p.partition(": ")
        distribution = sep and _DISTRIBUTION_PATH.match(sub)
        out.append(
            Problem(f"{where}.{key}.{sub}", message)
            if distribution
            else Problem(f"{where}.{key}", p)
        )
    return out


def grid_size(space: dict[str, Any]) -> int:
    """How many combinations the space's grid axes make (1 without any)."""
    return math.prod(
        len(Distribution.of(spec).args) for spec in space.values() if _is_grid_axis(spec)
    )


def space_size(space: dict[str, Any]) -> int | None:
    """How many distinct configurations the space holds; None when a range is continuous (its
    samples practically never repeat)."""
    sizes = [Distribution.of(spec).size() for spec in space.values()]
    return None if None in sizes else math.prod(sizes)


def distinct_configurations(
    space: dict[str, Any], baseline: dict[str, Any] | None, added: bool
) -> int | None:
    """How many different trials a task can run: the space's configurations, plus the baseline's
    point when it is a trial of its own outside them; None for a continuous space."""
    size = space_size(space)
    if size is None or not added or baseline is None:
        return size
    inside = all(Distribution.of(spec).gives(baseline[k]) for k, spec in space.items())
    return size + int(not inside)


def grid_points(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the grid axes (for --dry-run listings)."""
    axes = {k: Distribution.of(v).args for k, v in space.items() if _is_grid_axis(v)}
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def _is_grid_axis(spec: Any) -> bool:
    return (
        isinstance(spec, dict)
        and len(spec) == 1
        and next(iter(spec)) in KINDS
        and KINDS[next(iter(spec))].grid_axis
    )
