"""Joining a Ray cluster, or starting a private local one: what every command's driver does first.

No torch here (nor anything that imports it): a sweep's driver runs Tune in this process.
"""

from __future__ import annotations

import os

import ray

from cyclegan.errors import UserError


def connect(address: str | None = None, *, num_cpus: int | None = None, runtime_env: dict | None = None,
            log_to_driver: bool = True) -> bool:
    """Join the cluster at `address` (or $RAY_ADDRESS: `auto`, `ray://…`, an IP) or start a private
    local Ray. True if this call started Ray here. `address="local"` never joins a (perhaps
    dead) cluster recorded in /tmp/ray, as a bare `ray.init()` would. `log_to_driver=False` leaves
    the workers' output in Ray's log files instead of printing it here."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    try:
        if address == "local":
            # With the dashboard (Ray's default): Train V2's PlacementGroupCleaner polls the state API it serves.
            ray.init(address="local", num_cpus=num_cpus, runtime_env=runtime_env, log_to_driver=log_to_driver)
        else:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=log_to_driver)
    except ConnectionError as err:
        raise UserError(f"--address {address}: cannot reach the Ray cluster ({err}); check --address / RAY_ADDRESS") from None
    return address == "local"


def alive_nodes() -> list[dict[str, float]]:
    """Each live node's total resources (CPU, GPU, memory in bytes, ...)."""
    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
