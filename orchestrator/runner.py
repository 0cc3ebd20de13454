"""The main job: storage and tracking checks, Ray, the sweeps, the registry, the summary."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .manifest import LoadedManifest, TaskPlan
from .train import connect
from .sweep import SweepContext, run_sweeps, summary_table, write_results

log = logging.getLogger(__name__)

# Environment the Ray workers need to reach S3 and MLflow like the driver does.
FORWARDED_ENV_PREFIXES = ("AWS_", "MLFLOW_", "CYCLEGAN_")




def run_experiment(loaded: LoadedManifest, plans: list[TaskPlan], *, storage: str, address: str | None, resume: bool,
                   results_dir: Path, echo=print) -> int:
    from .storage import validate_storage

    experiment = loaded.manifest.name
    target = validate_storage(storage)
    storage = target.path if target.is_local else storage  # local folders made absolute: workers run elsewhere
    ctx = SweepContext(experiment=experiment, storage=storage, resume=resume)
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
    connect(address, runtime_env={"env_vars": env} if env else None)
    echo(f"sweeping {len(plans)} task(s) of {experiment}: " + ", ".join(f"{p.name} ({p.trial_count} trials)" for p in plans))
    results = run_sweeps(loaded, plans, ctx, echo=echo)
    path = write_results(results, loaded, ctx, results_dir / f"{experiment}.json")
    echo("\n" + summary_table(results))
    echo(f"\nresults: {path}")
    failed = [r.task for r in results if r.best is None]
    if failed:
        echo(f"error: no successful trial for task(s) {', '.join(failed)}; see {path} for the errors")
        return 1
    return 0
