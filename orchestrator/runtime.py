"""What a driver does with Ray itself: join a cluster or start a private local Ray (what every
command does first), read its live nodes and its log folder, and end it quietly.

No torch here (nor anything that imports it): a sweep's driver runs Tune in this process.
"""

from __future__ import annotations

import os
import time

import ray

from cyclegan.errors import UserError
from orchestrator.ray_internals import session_logs_dir


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
