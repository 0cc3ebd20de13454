"""Before a sweep starts: can the cluster ever run one trial of each task?

Ray waits forever for resources it does not have (printing a warning every minute). A trial that
asks for more than the cluster can ever offer therefore fails here, before anything trains: at once
on a cluster that cannot grow (the private local Ray, or one whose autoscaler is read-only: no node
types to launch), and after `wait_s` seconds of asking an autoscaler for the nodes otherwise.
"""

from __future__ import annotations

import json
import time

from cyclegan.errors import UserError

from .manifest import TaskPlan

DEFAULT_RESOURCE_WAIT_S = 900.0
POLL_S = 5.0
TUNE_TRIAL_CPU = 0.01  # the Tune function trial that drives a Train run (orchestrator.sweep)


def worker_bundle(plan: TaskPlan) -> dict[str, float]:
    r = plan.resources
    return {k: v for k, v in {"CPU": r.cpus_per_worker, "GPU": r.gpus_per_worker}.items() if v}


def trial_needs(plan: TaskPlan) -> dict[str, float]:
    r = plan.resources
    return {"CPU": r.workers * r.cpus_per_worker + TUNE_TRIAL_CPU, "GPU": r.workers * r.gpus_per_worker}


def _amounts(resources: dict[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"


def shortfalls(plans: list[TaskPlan], nodes: list[dict[str, float]]) -> list[str]:
    """One line per task whose single trial cannot fit on `nodes` (each node's total resources):
    its workers together, or one worker on any one node."""
    total = {k: sum(n.get(k, 0) for n in nodes) for k in ("CPU", "GPU")}
    problems = []
    for plan in plans:
        r, need, bundle = plan.resources, trial_needs(plan), worker_bundle(plan)
        fits_total = all(need[k] <= total[k] + 1e-9 for k in need)
        fits_a_node = any(all(bundle[k] <= n.get(k, 0) + 1e-9 for k in bundle) for n in nodes)
        if fits_total and fits_a_node:
            continue
        largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
        problems.append(f"task {plan.name}: a trial asks for {r.workers} worker(s) x ({_amounts(bundle)}) = "
                        f"{_amounts({'CPU': r.workers * r.cpus_per_worker, 'GPU': need['GPU']})}; the cluster has "
                        f"{_amounts(total)} in {len(nodes)} node(s) (largest: {_amounts(largest)})")
    return problems


def _alive_nodes() -> list[dict[str, float]]:
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def has_autoscaler() -> bool:
    """Whether the cluster's autoscaler can launch nodes. `ray start --head` without a cluster config
    (and the private local Ray) runs it read-only: its node types are the running nodes, named
    node_<id>. No status at all (e.g. a KubeRay autoscaler of its own): assume it can grow."""
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_initialized

    if not _internal_kv_initialized():
        return True
    raw = _internal_kv_get("__autoscaling_status")
    if not raw:
        return True
    report = json.loads(raw).get("autoscaler_report") or {}
    types = set(report.get("active_nodes") or {}) | set(report.get("idle_nodes") or {}) | set(report.get("pending_nodes") or [])
    return not types or not all(str(t).startswith("node_") for t in types)


def check_cluster_fits(plans: list[TaskPlan], *, can_grow: bool, wait_s: float = DEFAULT_RESOURCE_WAIT_S, echo=print) -> None:
    """Raise a UserError naming what each task asks and what the cluster has, unless one trial of
    every task fits; with `can_grow`, first ask the autoscaler and wait up to `wait_s` seconds."""
    problems = shortfalls(plans, _alive_nodes())
    if not problems:
        return
    hint = "lower tasks[].resources (workers, cpus_per_worker, gpus_per_worker) or defaults.resources"
    if not can_grow or wait_s <= 0:
        where = "and cannot grow (no autoscaler)" if not can_grow else "(--resource-wait 0)"
        raise UserError("the cluster can never run these trials " + where + ":\n  " + "\n  ".join(problems) + f"\n{hint}")
    from ray.autoscaler.sdk import request_resources

    bundles = [b for plan in plans for b in [worker_bundle(plan)] * plan.resources.workers]
    request_resources(bundles=bundles)
    echo(f"waiting up to {wait_s:g} s for the autoscaler to add nodes:\n  " + "\n  ".join(problems))
    deadline = time.monotonic() + wait_s
    try:
        while problems and time.monotonic() < deadline:
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
            problems = shortfalls(plans, _alive_nodes())
    finally:
        request_resources(bundles=[])  # the trials make their own requests from here on
    if problems:
        raise UserError(f"the autoscaler did not add the nodes within {wait_s:g} s (--resource-wait):\n  "
                        + "\n  ".join(problems) + f"\n{hint}, or check the cluster's node types and limits")
