"""Under `ray job submit`, outputs must not land in the job's working directory: Ray deletes it.

A submitted job runs in a copy of the uploaded checkout under the node's
`.../runtime_resources/working_dir_files/_ray_pkg_<hash>/`, which Ray removes when it no longer
needs it. The embedded defaults (storage `./runs`, MLflow at `sqlite:///./mlflow.db` with artifacts
in `./mlartifacts/`) would resolve inside it, and the checkpoints, runs and registered models of a
whole sweep would be lost. Such a run is refused before anything trains.
"""

from __future__ import annotations

import os
from pathlib import Path

from cyclegan.errors import UserError

# What Ray's job supervisor sets for every job driver (ray.dashboard.modules.job.job_supervisor).
JOB_ENV_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def job_working_dir(cwd: Path | None = None) -> Path | None:
    """The temporary working directory of the Ray job this process is the driver of, or None."""
    if JOB_ENV_VAR not in os.environ:
        return None
    cwd = Path(cwd or Path.cwd()).resolve()
    return cwd if "runtime_resources" in cwd.parts else None


def check_outputs_outlast_the_job(storage: str, tracking_uri: str, manifest: Path) -> None:
    """Raise a UserError naming each output that would resolve inside the job's working dir."""
    job_dir = job_working_dir()
    if job_dir is None:
        return
    from orchestrator.storage.location import parse_storage
    from orchestrator.tracking.server import sqlite_path

    problems = []
    target = parse_storage(storage)
    if target.is_local and _inside(Path(target.path), job_dir):
        problems.append(
            f"storage {storage!r} resolves to {target.path}: set `storage:` in {manifest} (or pass "
            f"--storage) "
            "to s3://BUCKET/PREFIX or a folder every node shares"
        )
    db = sqlite_path(tracking_uri)
    if db is not None and _inside(db, job_dir):
        problems.append(
            f"tracking: the MLflow store would be {tracking_uri}: set `tracking.uri` in {manifest} "
            f"or "
            "MLFLOW_TRACKING_URI in the env_vars of cluster/runtime_env.yaml to your MLflow server (http://HOST:5000)"
        )
    if problems:
        raise UserError(
            f"this is a Ray job: its working directory {job_dir} is temporary (Ray deletes it), "
            f"so\n  " + "\n  ".join(problems)
        )


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder)
