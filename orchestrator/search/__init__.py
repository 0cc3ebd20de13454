"""The extension points of a sweep: search algorithms, schedulers (PBT, PB2), guard rails, as Ray Tune objects."""

from orchestrator.search.strategies import ALGORITHMS, EXPLOITS_ONE_WORKER, SCHEDULERS, TABLES, AlgorithmField, SchedulerField  # noqa: F401
