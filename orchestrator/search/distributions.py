"""A manifest's search distributions (`{uniform: [low, high]}` ...) as Ray Tune's: what the search
space and a PBT scheduler's mutations are made of. The kinds and their Tune arguments are
orchestrator.config.space's."""

from __future__ import annotations

from typing import Any

from ray import tune

from orchestrator.config.space import Distribution


def tune_distribution(spec: dict[str, Any]):
    distribution = Distribution.of(spec)
    kind = distribution.kind
    return getattr(tune, kind.tune)(*kind.tune_args(distribution.args))
