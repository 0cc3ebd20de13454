"""The job's last step for the tasks that name `deliver:`: the task's champion translates the
delivery set, as `python -m orchestrator translate` does (orchestrator.batch), on the sweep's Ray.

Delivering after every job, whether or not the champion moved, keeps one invariant: the set is
translated by the champion of the moment. When the champion moved, the new one translates
everything again (the ledger's outputs are another model version's); when it did not, the job finds
every output there and translates nothing, or finishes a delivery that a stopped job left halfway.
"""

from __future__ import annotations

from collections.abc import Callable

from cyclegan.errors import UserError
from orchestrator.config.delivery import Deliver
from orchestrator.config.plan import TaskPlan
from orchestrator.config.problems import ManifestError
from orchestrator.redact import mask_text
from orchestrator.sweep.results import TaskResult


def deliver_champions(
    results: list[TaskResult],
    plans: list[TaskPlan],
    uri: str,
    registry_prefix: str,
    echo: Callable[[str], None],
) -> list[str]:
    """Translate each delivering task's set with the task's champion; record the outcome in its
    result (`result.delivery`); returns the tasks whose delivery is not complete.

    Args:
        results: the tasks' results, registered (`registry["champion_version"]`).
        plans: the tasks' plans, in the same order (`deliver`).
        uri: the MLflow tracking URI.
        registry_prefix: the registered models' prefix (tracking.registry_prefix).
        echo: where the lines for the user go.
    """
    incomplete = []
    for result, plan in zip(results, plans):
        if plan.deliver is None:
            continue
        champion = (result.registry or {}).get("champion_version")
        if not champion:
            why = "its registration failed" if "error" in (result.registry or {}) else "no champion"
            result.delivery = {"skipped": why}
            echo(f"delivery of task {result.task}: skipped, {why}")
            continue
        # The version, not the alias: the set is translated by the champion this job left.
        model = f"models:/{registry_prefix}{result.task}/{champion}"
        where = mask_text(f"{plan.deliver.input} -> {plan.deliver.output}")
        echo(
            f"delivery of task {result.task}: {where} by {registry_prefix}{result.task} v{champion}"
        )
        try:
            report = _translate(plan, model, uri, lambda line: echo(f"  {line}"))
        except Exception as err:  # the sweep's results are still to be written: never lost to this
            text = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
            report = {"complete": False, "error": mask_text(text)[:500]}
            echo(f"  delivery failed: {report['error']}")
        result.delivery = _outcome(plan.deliver, model, report)
        if not report["complete"]:
            incomplete.append(result.task)
    return incomplete


def _translate(plan: TaskPlan, model: str, uri: str, echo: Callable[[str], None]) -> dict:
    from orchestrator.batch.job import JobOptions, parse_workers, translate

    spec = plan.deliver
    options = JobOptions(
        model=model,
        input=spec.input,
        output=spec.output,
        direction=spec.direction,
        format=spec.format,
        workers=parse_workers(str(spec.workers)),
        gpus_per_worker=spec.gpus_per_worker,
        batch_size=spec.batch_size,
        endpoint_url=plan.train.get("s3_endpoint_url") or None,
        tracking_uri=uri,
    )
    return translate(options, echo)


def _outcome(spec: Deliver, model: str, report: dict) -> dict:
    """What the results file keeps of a delivery."""
    outcome = {  # masked: a location may carry credentials
        "input": mask_text(spec.input),
        "output": mask_text(spec.output),
        "direction": spec.direction,
        "complete": report["complete"],
    }
    if "error" in report:
        return {**outcome, "model": model, "error": report["error"]}
    name, version = report["model"]["name"], report["model"]["version"]
    return {
        **outcome,
        "model": f"models:/{name}/{version}",
        "counts": report["counts"],
        "report": f"{outcome['output'].rstrip('/')}/_translation.json",
        "mlflow_run_id": report["mlflow_run_id"],
    }


def delivery_line(result: TaskResult) -> str:
    """The summary's line about a task's delivery."""
    delivery = result.delivery or {}
    if "skipped" in delivery:
        return f"task {result.task}: skipped ({delivery['skipped']})"
    if "error" in delivery:
        return f"task {result.task}: failed ({delivery['error']})"
    counts = delivery["counts"]
    return (
        f"task {result.task}: {delivery['output']} by {delivery['model']}: translated "
        f"{counts['translated']}, already there {counts['already_there']}, failed "
        f"{counts['failed']}" + ("" if delivery["complete"] else " (incomplete)")
    )


def check_deliveries(plans: list[TaskPlan]) -> None:
    """Before anything trains: each delivery's input holds images and its output lies outside it
    (the same checks `translate` makes, at the task's S3 endpoint), so a job never sweeps for hours
    to fail on a typo in its last step."""
    from orchestrator.batch.stores import check_apart, is_image, open_store

    problems = []
    for i, plan in enumerate(plans):
        spec = plan.deliver
        if spec is None:
            continue
        endpoint = plan.train.get("s3_endpoint_url") or None
        try:
            inputs = open_store(spec.input, endpoint, "deliver.input", output=False)
            outputs = open_store(spec.output, endpoint, "deliver.output", output=True)
            check_apart(inputs, outputs, ("deliver.input", "deliver.output"))
            if not any(is_image(key) for key, _ in inputs.list()):  # stops at the first
                raise UserError(f"deliver.input {spec.input}: no image found (png, jpg, ...)")
        except UserError as err:
            problems.append(f"tasks[{i}] ({plan.name}): {mask_text(str(err))}")
    if problems:
        raise ManifestError(f"{len(problems)} delivery problem(s):\n  " + "\n  ".join(problems))
