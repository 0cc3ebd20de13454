"""A task's best trial weighed, image by image (cyclegan.scores): against doing nothing (the
untranslated test images) and against the paper's baseline trial; and the champion evaluated
again when the promotion rule needs it under the challenger's protocol."""

from __future__ import annotations

import json
import logging
from dataclasses import astuple
from pathlib import Path

from cyclegan.run_files import CONFIG_FILE, EVALUATION_FILE, UNTRANSLATED_FILE
from cyclegan.scores import Scores
from orchestrator.storage.best import fetch_best
from orchestrator.storage.location import Storage, trial_run_name
from orchestrator.sweep.results import RANKED_STATUSES, TaskResult

log = logging.getLogger(__name__)

REEVALUATE_TIMEOUT_S = 1800  # a test split with FID on a CPU node takes minutes, not hours


def weigh(result: TaskResult, best_folder: Path | None, trials: Storage, tmp: Path) -> None:
    """Fill `result.untranslated`, `over_untranslated` and `over_baseline` from the evidence kept
    with the best trial's best epoch (in `best_folder`) and the baseline trial's."""
    best, metric = result.best, result.metric
    scores = Scores.load_if_present(best_folder / EVALUATION_FILE) if best_folder else None
    if best is None or scores is None:
        return
    nothing = Scores.load_if_present(best_folder / UNTRANSLATED_FILE)
    if nothing is not None and nothing.comparable(scores) is None:
        low, high = nothing.interval(metric)
        result.untranslated = {
            "value": nothing.value(metric),
            "ci": [low, high],
            "protocol": nothing.protocol,
        }
        result.over_untranslated = list(astuple(scores.compare(nothing, metric)))
    baseline = result.baseline
    if (
        baseline is None
        or baseline is best
        or baseline.status not in RANKED_STATUSES
        or (baseline.lineage or {}).get("exploits")  # PBT changed its values: not the paper's
    ):
        return
    fetched = fetch_best(
        trials,
        trial_run_name(result.task, baseline.trial_id),
        tmp / "baseline",
        only=(EVALUATION_FILE,),
    )
    theirs = Scores.load_if_present(fetched[0] / EVALUATION_FILE) if fetched else None
    if theirs is not None and scores.comparable(theirs) is None:
        result.over_baseline = list(astuple(scores.compare(theirs, metric)))


def champion_reevaluator(uri: str, model_name: str, best_folder: Path):
    """`reevaluate(version)` for the promotion rule: that version's generators evaluated, in a Ray
    task, on the challenger's test split with the challenger's protocol (its config.json)."""
    import ray

    from orchestrator.tracking.registry import version_generators
    from orchestrator.trial.reevaluate import evaluate_generators

    config = json.loads((best_folder / CONFIG_FILE).read_text())

    def reevaluate(version: str) -> Scores:
        generators, architecture = version_generators(uri, model_name, version)
        task = ray.remote(num_cpus=1)(evaluate_generators)
        try:
            data = ray.get(
                task.remote(config, generators, architecture), timeout=REEVALUATE_TIMEOUT_S
            )
        except Exception as err:  # the task's own error, a lost node, a timeout: say which
            raise ValueError(
                f"{type(err).__name__}: {(str(err).splitlines() or [''])[-1][:200]}"
            ) from None
        path = best_folder.parent / f"champion-v{version}.npz"
        path.write_bytes(data)
        return Scores.load(path)

    return reevaluate
