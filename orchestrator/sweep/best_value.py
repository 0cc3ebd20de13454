"""The summary's value column of a task: its best trial's value with its 95 % interval and epoch;
with search.repeats, the best configuration's mean over its seeds first (orchestrator.sweep.seeds);
and beside it the structure distance (dino_struct) of that epoch when it was evaluated, so that a
better FID bought by losing the input's layout shows."""

from __future__ import annotations

import math
from typing import Any

from cyclegan.metric_names import STRUCTURE_METRICS, base_metric
from cyclegan.scores import ci_keys
from orchestrator.sweep.constraints import value_at_best
from orchestrator.sweep.seeds import mean_text


def interval_text(ci: list[float] | None) -> str:
    if not ci or any(v is None or math.isnan(v) for v in ci):
        return ""
    return f" [{ci[0]:.4g}, {ci[1]:.4g}]"


def best_text(result: Any, best: Any) -> str:
    """'fid=41.2 [38.1, 44.9] @ epoch 5 (min); dino_struct=0.012 [0.010, 0.014]'."""
    one = f"{best.metric:.4g}{interval_text(best.metric_ci)} @ epoch {best.best_epoch}"
    if result.configurations:
        one = f"{mean_text(result.configurations[0])} ({result.mode}); this seed {one}"
    else:
        one = f"{one} ({result.mode})"
    beside = []
    for name in STRUCTURE_METRICS:
        value = value_at_best(best, name)
        if value is not None and base_metric(result.metric) != name:
            ci = [value_at_best(best, key) for key in ci_keys(name)]
            beside.append(f"; {name}={value:.4g}{interval_text(ci)}")
    return f"{result.metric}={one}{''.join(beside)}"
