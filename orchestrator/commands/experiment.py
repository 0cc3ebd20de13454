"""`python -m orchestrator validate MANIFEST` and `python -m orchestrator run MANIFEST`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cyclegan.errors import UserError
from cyclegan.metric_names import STRUCTURE_METRICS
from orchestrator.config.plan import LoadedManifest, TaskPlan, load_manifest
from orchestrator.config.problems import ManifestError
from orchestrator.config.resources import DEFAULT_STORAGE
from orchestrator.config.space import grid_points
from orchestrator.sweep.delivery import check_deliveries
from orchestrator.sweep.placement import DEFAULT_RESOURCE_WAIT_S


def _select(loaded: LoadedManifest, only: str | None) -> list[TaskPlan]:
    if not only:
        return loaded.plans
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    known = {p.name for p in loaded.plans}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise UserError(
            f"--only: no task named {', '.join(unknown)} in {loaded.path} (tasks: "
            f"{', '.join(sorted(known))})"
        )
    return [p for p in loaded.plans if p.name in wanted]


def check_data(plans: list[TaskPlan]) -> None:
    """Every task's data reference must resolve and hold trainA/ and trainB/: the reference as the
    manifest parsed it, through the scheme (cyclegan.sources) and at the S3 endpoint its trials will
    read it from (the task's s3_endpoint_url, else the environment's), without downloading it."""
    from cyclegan.sources import check_dataset_reference

    problems = []
    for i, plan in enumerate(plans):
        try:
            check_dataset_reference(
                plan.dataset or plan.data, endpoint_url=plan.train.get("s3_endpoint_url") or None
            )
        except UserError as err:
            problems.append(f"tasks[{i}].data ({plan.name}): {err}")
    if problems:
        raise ManifestError(f"{len(problems)} dataset problem(s):\n  " + "\n  ".join(problems))


def check_weights(plans: list[TaskPlan]) -> None:
    """dino_struct's weights are a local file, never downloaded: a task that evaluates it is
    refused here, saying where to put the file, rather than failing in every trial."""
    needing = [
        (i, p) for i, p in enumerate(plans) if set(STRUCTURE_METRICS) & set(p.evaluated_metrics)
    ]
    if not needing:
        return
    from cyclegan.structure import find_dino_weights  # torch: only for a task that needs it

    problems = []
    for i, plan in needing:
        try:
            find_dino_weights(plan.base.structure_weights or None)
        except UserError as err:
            problems.append(f"tasks[{i}] ({plan.name}): {err}")
    if problems:
        raise ManifestError(f"{len(problems)} weights problem(s):\n  " + "\n  ".join(problems))


def _validate(args: argparse.Namespace) -> int:
    loaded = load_manifest(args.manifest)
    check_weights(loaded.plans)
    if not args.offline:
        check_data(loaded.plans)
        check_deliveries(loaded.plans)
    total = sum(p.trial_count for p in loaded.plans)
    print(
        f"{args.manifest}: valid; {len(loaded.plans)} task(s), {total} trial(s)"
        + ("" if args.offline else "; every dataset has trainA/ and trainB/")
    )
    for plan in loaded.plans:
        if plan.capped:
            print(plan.capped)
    return 0


def describe_plan(plans: list[TaskPlan], storage: str) -> str:
    """What `run --dry-run` prints, credentials masked (storage and data references may hold
    some)."""
    from orchestrator.redact import mask_text

    lines = [f"storage: {storage}"]
    for plan in plans:
        r = plan.resources
        per_trial = (
            f"{r.workers} worker(s) x ({r.cpus_per_worker:g} CPU, {r.gpus_per_worker:g} GPU)"
        )
        lines.append(
            f"task {plan.name}: {plan.trial_count} trial(s) of {plan.total_epochs} epochs, "
            f"{per_trial} each, "
            f"{plan.search.algorithm.type} search on {plan.search.metric} "
            f"({plan.search.resolved_mode}, best epoch), "
            f"scheduler {plan.search.scheduler.type}, at most "
            f"{plan.search.max_concurrent_trials or 'as many as fit'} at once"
        )
        lines.append(f"  data: {plan.data}")
        if plan.deliver:
            d = plan.deliver
            lines.append(
                f"  delivery: the champion translates {d.input} -> {d.output} ({d.direction}, "
                f"{d.format}) at the end of the job"
            )
        if plan.capped:
            lines.append(f"  {plan.capped}")
        for key, spec in plan.space.items():
            lines.append(f"  {key}: {spec}")
        if plan.baseline is not None:
            how = "its own first trial" if plan.baseline_added else "one of the search's own trials"
            lines.append(
                f"  baseline (the paper's values): {plan.baseline or 'the task as it is'}, {how}"
            )
        if any("grid" in s for s in plan.space.values()):
            for point in grid_points(plan.space):
                lines.append(f"    grid point: {point}")
        peak_trials = min(plan.trial_count, plan.search.max_concurrent_trials or plan.trial_count)
        lines.append(
            f"  needs at most {peak_trials * r.workers * r.cpus_per_worker:g} CPU and "
            f"{peak_trials * r.workers * r.gpus_per_worker:g} GPU at once"
        )
    return mask_text("\n".join(lines))


def _run(args: argparse.Namespace) -> int:
    loaded = load_manifest(args.manifest)
    plans = _select(loaded, args.only)
    check_weights(plans)
    storage = args.storage or loaded.manifest.storage or DEFAULT_STORAGE
    if args.dry_run:
        print(describe_plan(plans, storage))
        print("dry run: nothing started")
        return 0
    from orchestrator.sweep.job_dir import check_outputs_outlast_the_job
    from orchestrator.tracking.server import resolve_tracking_uri

    check_outputs_outlast_the_job(
        storage, resolve_tracking_uri(loaded.manifest.tracking.uri), loaded.path
    )
    if not args.offline:
        check_data(plans)
        check_deliveries(plans)
    for plan in plans:
        if plan.capped:
            print(plan.capped)
    from orchestrator.sweep.console import RunConsole
    from orchestrator.sweep.experiment import run_experiment
    from orchestrator.sweep.options import RunOptions

    results_dir = Path(args.results_dir)
    console = RunConsole(results_dir / f"{loaded.manifest.name}.log", verbose=args.verbose)
    options = RunOptions(
        storage=storage,
        address=args.address,
        resume=args.resume,
        results_dir=results_dir,
        verbose=args.verbose,
        log_path=None if args.verbose else console.log_path,
        resource_wait_s=args.resource_wait,
    )
    with console.captured():
        return run_experiment(loaded, plans, options, echo=console.echo)


def register(subparsers) -> None:
    validate = subparsers.add_parser(
        "validate",
        help="check a manifest without running anything",
        description=(
            "Check a manifest: exit 0, or exit 2 listing every problem by field path and line."
        ),
    )
    validate.add_argument("manifest", help="the experiment manifest (YAML)")
    validate.add_argument(
        "--offline",
        action="store_true",
        help="skip checking that each task's dataset resolves and has trainA/ trainB/",
    )
    validate.add_argument("--debug", action="store_true", help="show full tracebacks")
    validate.set_defaults(run=_validate)

    run = subparsers.add_parser(
        "run",
        help="sweep every task of a manifest with Ray Tune",
        description="Validate a manifest, then sweep its tasks in one Ray Tune run (a one-worker "
        "trial trains in its Tune trial, "
        "more workers make a Ray Train run), "
        "log to MLflow and register each task's best generator.",
    )
    run.add_argument("manifest", help="the experiment manifest (YAML)")
    run.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="Ray cluster: 'auto' (a running cluster on this machine), ray://HOST:PORT, or nothing "
        "for a private local Ray "
        "(default: $RAY_ADDRESS, as set by `ray job submit`)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help=(
            "continue an interrupted run of this manifest (with the same --only selection); "
            "finished trials are not redone"
        ),
    )
    run.add_argument("--only", metavar="TASK,...", help="run only these tasks")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the trials that would run and the resources they need; start nothing",
    )
    run.add_argument(
        "--storage", help="override the manifest's storage (a folder or s3://bucket/prefix)"
    )
    run.add_argument("--offline", action="store_true", help="skip the up-front dataset checks")
    run.add_argument(
        "--resource-wait",
        type=float,
        default=DEFAULT_RESOURCE_WAIT_S,
        metavar="SECONDS",
        help="on a cluster with an autoscaler, how long to wait for the nodes a trial needs before "
        "failing "
        f"(default: {DEFAULT_RESOURCE_WAIT_S:g}); a cluster that cannot grow (the private local "
        f"Ray) fails at once",
    )
    run.add_argument(
        "--results-dir",
        default="results",
        help=(
            "where the experiment's results JSON and its log (<name>.log) are written (default: "
            "./results)"
        ),
    )
    run.add_argument(
        "--verbose",
        action="store_true",
        help="print everything (Ray's workers, Tune, MLflow) here instead of only the progress and "
        "the summary; "
        "without it, that output goes to results/<name>.log and Ray's session logs",
    )
    run.add_argument("--debug", action="store_true", help="show full tracebacks")
    run.set_defaults(run=_run)
