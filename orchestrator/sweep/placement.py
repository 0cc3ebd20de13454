"""What a sweep's trials reserve on the cluster, how many the cluster holds at once, and whether it
can ever run them.

What one trial reserves (its Ray resource requests; Ray only starts it once they are free, so a
manifest bigger than the cluster queues instead of starting everything at once):

- a **one-worker trial** trains in its Tune trial process: one bundle, the worker's CPUs, GPUs and
  memory (`resources.memory_per_worker`), on whichever node has them free;
- a **multi-worker trial** is a Ray Train run: its Tune trial process, the Train controller and
  Train's helper actors (the driver side, about 1.1 GB, TRAIN_DRIVER_MEMORY_GIB) reserve a sliver of
  a CPU and that memory on one node, and each worker its own bundle (Ray Train's placement group).

Ray waits forever for resources it does not have (printing a warning every minute). A trial that
asks for more than the cluster can ever offer therefore fails here, before anything trains: at once
on a cluster that cannot grow (the private local Ray, or one whose autoscaler is read-only: no node
types to launch), and after `wait_s` seconds of asking an autoscaler for the nodes otherwise.
"""

from __future__ import annotations

import time

from cyclegan.errors import UserError
from orchestrator.config.plan import TaskPlan
from orchestrator.config.resources import GIB, Resources

DEFAULT_RESOURCE_WAIT_S = 900.0
POLL_S = 5.0
TUNE_TRIAL_CPU = (
    0.01  # the Tune trial process that drives a Train run (Tune refuses a zero request)
)
# A Train run's driver side, measured (docs/notes/sweep-scale-findings.md, b): Tune trial 383 MB,
# Train controller 370 MB, PlacementGroupCleaner, DatasetManager and SynchronizationActor about 106
# MB each (private memory), with the preemption watcher off; rounded up. (The PlacementGroupCleaner
# runs on the head whatever is asked.)
TRAIN_DRIVER_MEMORY_GIB = 1.2


def trial_bundle(resources: Resources) -> dict[str, float]:
    """The Tune trial process's own reservation (Ray resource names, memory in bytes)."""
    if resources.trains_in_trial:
        return resources.worker_bundle()
    return {"CPU": TUNE_TRIAL_CPU, "memory": TRAIN_DRIVER_MEMORY_GIB * GIB}


def trial_bundles(resources: Resources) -> list[dict[str, float]]:
    """Everything one trial reserves: its own bundle, and a Train run's workers' bundles."""
    if resources.trains_in_trial:
        return [trial_bundle(resources)]
    return [trial_bundle(resources)] + [resources.worker_bundle()] * resources.workers


def trial_placement(resources: Resources):
    """The Tune trial's `PlacementGroupFactory` (a Train run reserves its workers' bundles
    itself)."""
    from ray.tune import PlacementGroupFactory

    return PlacementGroupFactory([trial_bundle(resources)])


def trial_needs(plan: TaskPlan) -> dict[str, float]:
    """CPUs and GPUs of one trial, all bundles together."""
    bundles = trial_bundles(plan.resources)
    return {k: sum(b.get(k, 0) for b in bundles) for k in ("CPU", "GPU")}


def _amounts(resources: dict[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"


def _fits(bundle: dict[str, float], node: dict[str, float]) -> bool:
    """`bundle` fits in `node`'s resources (a node that does not report its memory is not judged by
    it)."""
    return all(
        amount <= node.get(k, 0) + 1e-9
        for k, amount in bundle.items()
        if k != "memory" or "memory" in node
    )


def shortfalls(plans: list[TaskPlan], nodes: list[dict[str, float]]) -> list[str]:
    """One line per task whose single trial cannot fit on `nodes` (each node's total resources):
    its workers together, one worker on any one node, or what it reserves of a node's memory."""
    total = {k: sum(n.get(k, 0) for n in nodes) for k in ("CPU", "GPU")}
    problems = []
    for plan in plans:
        r, need = plan.resources, trial_needs(plan)
        bundles = trial_bundles(r)
        fits_total = all(need[k] <= total[k] + 1e-9 for k in need)
        cpu_gpu = [{k: v for k, v in b.items() if k != "memory"} for b in bundles]
        fits_a_node = all(any(_fits(b, n) for n in nodes) for b in cpu_gpu)
        if not (fits_total and fits_a_node):
            worker = {k: v for k, v in r.worker_bundle().items() if k != "memory"}
            largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
            problems.append(
                f"task {plan.name}: a trial asks for {r.workers} worker(s) x ({_amounts(worker)}) "
                f"= "
                f"{_amounts({'CPU': r.workers * r.cpus_per_worker, 'GPU': need['GPU']})}; the "
                f"cluster has "
                f"{_amounts(total)} in {len(nodes)} node(s) (largest: {_amounts(largest)})"
            )
            continue
        if not all(any(_fits(b, n) for n in nodes) for b in bundles):
            most = max((n.get("memory", 0) for n in nodes), default=0)
            what = (
                f"its worker reserves {r.memory_per_worker:g} GiB of memory"
                if r.trains_in_trial
                else (
                    f"it reserves {TRAIN_DRIVER_MEMORY_GIB:g} GiB for its Train driver side and "
                    f"{r.memory_per_worker:g} GiB per worker"
                )
            )
            problems.append(
                f"task {plan.name}: {what} (resources.memory_per_worker), and no node has that "
                f"much with its "
                f"CPUs and GPUs (the most memory a node has for Ray: {most / GIB:.1f} GiB)"
            )
    return problems


def trials_at_once(plans: list[TaskPlan], nodes: list[dict[str, float]]) -> int:
    """How many trials `nodes` hold at once, the tasks taking turns (each up to its own limit and
    trial count), every bundle on the first node with room; at least 1."""
    free = [dict(n) for n in nodes]
    room = {
        p.name: min(p.trial_count, p.search.max_concurrent_trials or p.trial_count) for p in plans
    }
    placed, progress = 0, True
    while progress:
        progress = False
        for plan in plans:
            if room[plan.name] and _place(trial_bundles(plan.resources), free):
                room[plan.name] -= 1
                placed += 1
                progress = True
    return max(placed, 1)


def _place(bundles: list[dict[str, float]], free: list[dict[str, float]]) -> bool:
    """Take every bundle from the first node with room for it; all or nothing."""
    taken: list[tuple[dict[str, float], dict[str, float]]] = []
    for bundle in bundles:
        node = next((n for n in free if _fits(bundle, n)), None)
        if node is None:
            for back, amounts in taken:
                for k, v in amounts.items():
                    back[k] = back.get(k, 0) + v
            return False
        for k, v in bundle.items():
            node[k] = node.get(k, 0) - v
        taken.append((node, bundle))
    return True


def concurrency_limit(
    plans: list[TaskPlan], requested: int | None, nodes: list[dict[str, float]], can_grow: bool
) -> int:
    """Trials running at once across the tasks: the manifest's `max_concurrent_trials`, else what
    the cluster holds now; a cluster that can grow gets every trial at once (their requests are what
    makes the autoscaler add nodes)."""
    if requested:
        return requested
    if can_grow:
        return max(1, sum(p.trial_count for p in plans))
    return trials_at_once(plans, nodes)


def check_cluster_fits(
    plans: list[TaskPlan], *, can_grow: bool, wait_s: float = DEFAULT_RESOURCE_WAIT_S, echo=print
) -> None:
    """Raise a UserError naming what each task asks and what the cluster has, unless one trial of
    every task fits; with `can_grow`, first ask the autoscaler and wait up to `wait_s` seconds."""
    from orchestrator.runtime import alive_nodes

    problems = shortfalls(plans, alive_nodes())
    if not problems:
        return
    hint = (
        "lower tasks[].resources (workers, cpus_per_worker, gpus_per_worker, memory_per_worker) or "
        "defaults.resources"
    )
    if not can_grow or wait_s <= 0:
        where = "and cannot grow (no autoscaler)" if not can_grow else "(--resource-wait 0)"
        raise UserError(
            "the cluster can never run these trials "
            + where
            + ":\n  "
            + "\n  ".join(problems)
            + f"\n{hint}"
        )
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[b for plan in plans for b in trial_bundles(plan.resources)])
    echo(f"waiting up to {wait_s:g} s for the autoscaler to add nodes:\n  " + "\n  ".join(problems))
    deadline = time.monotonic() + wait_s
    try:
        while problems and time.monotonic() < deadline:
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
            problems = shortfalls(plans, alive_nodes())
    finally:
        request_resources(bundles=[])  # the trials make their own requests from here on
    if problems:
        raise UserError(
            f"the autoscaler did not add the nodes within {wait_s:g} s (--resource-wait):\n  "
            + "\n  ".join(problems)
            + f"\n{hint}, or check the cluster's node types and limits"
        )
