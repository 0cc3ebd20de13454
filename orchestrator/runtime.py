"""What a driver does with Ray itself: join a cluster or start a private local Ray (what every
command does first), read its live nodes and its log folder, and end it quietly.

No torch here (nor anything that imports it): a sweep's driver runs Tune in this process.
"""

from __future__ import annotations

import json
import os
import time

import ray

from cyclegan.errors import UserError
from orchestrator.ray_internals import autoscaling_status, session_logs_dir
from orchestrator.redact import environ_snapshot, is_secret_name, mask_text

# Settings the Ray workers need to reach S3 and MLflow like the driver does (endpoints, region,
# cache).
FORWARDED_ENV_PREFIXES = ("AWS_", "MLFLOW_", "CYCLEGAN_")
# Trials need no usage reports; MLflow's telemetry thread also changes os.environ while trials run.
WORKER_ENV_DEFAULTS = {"MLFLOW_DISABLE_TELEMETRY": "true"}


def worker_env(environ: dict[str, str]) -> dict[str, str]:
    """The runtime env's variables: the driver's non-secret settings only. Ray writes a runtime env
    in plain text to its runtime_env_agent.log, so no secret goes there: a private local Ray
    inherits the driver's environment anyway, and on a cluster the workers take credentials from
    their node (instance profile, IRSA) or from the runtime env the user wrote (docs/cluster.md)."""
    env = {
        k: v
        for k, v in environ.items()
        if k.startswith(FORWARDED_ENV_PREFIXES) and not is_secret_name(k) and mask_text(v) == v
    }
    return {**WORKER_ENV_DEFAULTS, **env}


def driver_runtime_env() -> dict | None:
    """The runtime env a driver joins Ray with: under `ray job submit` none (the job's own already
    carries the environment, and Ray refuses a second one with the same keys); a driver started by
    hand forwards its settings (no secrets)."""
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:
        return None
    return {"env_vars": worker_env(environ_snapshot())}


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    runtime_env: dict | None = None,
    log_to_driver: bool = True,
) -> bool:
    """Join the cluster at `address` (or $RAY_ADDRESS: `auto`, `ray://…`, an IP) or start a private
    local Ray. True if this call started Ray here. `address="local"` never joins a (perhaps
    dead) cluster recorded in /tmp/ray, as a bare `ray.init()` would. `log_to_driver=False` leaves
    the workers' output in Ray's log files instead of printing it here."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    try:
        if address == "local":
            # With the dashboard (Ray's default): Train V2's PlacementGroupCleaner polls the state
            # API it serves.
            ray.init(
                address="local",
                num_cpus=num_cpus,
                runtime_env=runtime_env,
                log_to_driver=log_to_driver,
            )
        else:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=log_to_driver)
    except ConnectionError as err:
        raise UserError(
            f"--address {address}: cannot reach the Ray cluster ({err}); check --address / "
            f"RAY_ADDRESS"
        ) from None
    return address == "local"


def alive_nodes() -> list[dict[str, float]]:
    """Each live node's total resources (CPU, GPU, memory in bytes, ...)."""
    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def has_autoscaler() -> bool:
    """Whether the cluster's autoscaler can launch nodes. `ray start --head` without a cluster
    config (and the private local Ray) runs it read-only: its node types are the running nodes,
    named node_<id>. No status at all (e.g. a KubeRay autoscaler of its own): assume it can grow."""
    raw = autoscaling_status()
    if not raw:
        return True
    report = json.loads(raw).get("autoscaler_report") or {}
    types = (
        set(report.get("active_nodes") or {})
        | set(report.get("idle_nodes") or {})
        | set(report.get("pending_nodes") or [])
    )
    return not types or not all(str(t).startswith("node_") for t in types)


def ray_logs_dir() -> str | None:
    """The folder of this Ray session's logs (None without a session)."""
    return session_logs_dir()


def shutdown_quietly(timeout: float = 15.0) -> None:
    """End a Ray started here in an order that lets its actors end on their own: Train's detached
    placement-group cleaners poll the GCS every second until their controller is gone, and one still
    polling when the GCS stops dies with a traceback in its log."""
    from ray.util.state import list_actors

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            cleaners = list_actors(
                filters=[("class_name", "=", "PlacementGroupCleaner"), ("state", "=", "ALIVE")],
                raise_on_missing_output=False,
                timeout=5,
            )
        except Exception:  # no state API (no dashboard): nothing to wait for
            break
        if not cleaners:
            break
        time.sleep(0.5)
    ray.shutdown()
