"""PB2 (`search.scheduler: pb2`), apart from orchestrator.search.pbt: Ray's PB2 imports scikit-learn, which the
driver only loads when a task uses it."""

from __future__ import annotations

from ray.tune.schedulers.pb2 import PB2

from orchestrator.search.population import ResumedSynchRepair


class TaskPB2(ResumedSynchRepair, PB2):
    """Ray's PB2, repaired as PBT is (orchestrator.search.population.ResumedSynchRepair)."""
