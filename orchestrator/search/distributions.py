"""A manifest's search distributions (`{uniform: [low, high]}` ...) as Ray Tune's: what the search space and a
PBT scheduler's mutations are made of."""

from __future__ import annotations

from typing import Any

from ray import tune


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
