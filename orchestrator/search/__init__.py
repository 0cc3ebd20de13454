"""The extension points of a sweep, as Ray lays out search/ and schedulers/: the search algorithms
(algorithms.py), the trial schedulers (schedulers/, PBT and PB2 included), the base types of their
entries (strategy.py), the guard rails (guards.py); build.py turns a task's plan into Tune objects.

The tables and their options load no Ray, scikit-learn or optuna: `validate` reads them. Each
entry's builder imports what it needs when the sweep builds its Tune object.
"""

from orchestrator.search.algorithms import ALGORITHMS, AlgorithmField
from orchestrator.search.schedulers import EXPLOITS_ONE_WORKER, SCHEDULERS, SchedulerField
from orchestrator.search.tables import TABLES

__all__ = [
    "ALGORITHMS",
    "EXPLOITS_ONE_WORKER",
    "SCHEDULERS",
    "TABLES",
    "AlgorithmField",
    "SchedulerField",
]
