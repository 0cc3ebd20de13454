"""One batch translation as a Ray Data job: resolve the model, plan, stream the images through the
decode tasks, the translating actors and the writers, and report.

Memory stays flat as the input grows: the driver holds the keys still to do (a few bytes each) and
the counts, never images; Ray Data streams blocks of `batch_size` images through the stages with
backpressure, so each stage holds only the blocks in flight. A task or an actor that dies has its
block done again (Ray Data retries it): an output is written whole or not at all, at a key fixed by
its input, so a retried block rewrites the same objects and duplicates none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from cyclegan.errors import UserError

from .plan import input_keys, make_plan
from .report import Tally, build_report, write_report
from .stages import CpuTranslator, Translator, decode, write
from .stores import check_apart, open_store

# Not a whole CPU: Ray Data then keeps decoding in tasks of its own instead of fusing it into the
# translating actors (whose time is the generator's), and runs two decoders per core (they wait on
# reads much of the time).
DECODE_CPUS = 0.5


@dataclass(frozen=True)
class JobOptions:
    """What `python -m orchestrator translate` asks for (checked by its parser)."""

    model: str
    input: str
    output: str
    direction: str = "AtoB"
    format: str = "png"
    workers: tuple[int, int] = (1, 1)
    gpus_per_worker: float = 0.0
    batch_size: int = 16
    overwrite: bool = False
    dry_run: bool = False
    address: str | None = None
    endpoint_url: str | None = None
    tracking_uri: str | None = None  # --tracking-uri as given


def parse_workers(text: str) -> tuple[int, int]:
    """'4' -> (4, 4); '1-8' -> (1, 8)."""
    low, dash, high = text.partition("-")
    try:
        pool = (int(low), int(high if dash else low))
    except ValueError:
        pool = (0, 0)
    if not 1 <= pool[0] <= pool[1]:
        raise UserError(f"--workers {text}: give a number (4) or a range MIN-MAX (1-8), from 1 up")
    return pool


def run_translation(options: JobOptions, echo=print) -> int:
    """Translate, report, record; the exit status: 0 when every readable image was translated."""
    report = translate(options, echo)
    return 0 if report is None or report["complete"] else 1


def translate(options: JobOptions, echo=print) -> dict[str, Any] | None:
    """Translate, write `_translation.json`, record the run in MLflow; returns the report (None
    for a dry run)."""
    from orchestrator.tracking.server import check_tracking, resolve_tracking_uri
    from orchestrator.tracking.translation import (
        fetch_generator,
        record_translation,
        resolve_model,
    )

    inputs = open_store(options.input, options.endpoint_url, "--input", output=False)
    outputs = open_store(options.output, options.endpoint_url, "--output", output=True)
    check_apart(inputs, outputs)
    keys = input_keys(inputs)  # a bad input fails in seconds, before the registry is asked
    uri = resolve_tracking_uri(options.tracking_uri)
    check_tracking(uri)
    model = resolve_model(uri, options.model)
    identity = f"{model.identity} {options.direction}"
    plan = make_plan(keys, outputs, identity, options.format, options.overwrite)
    low, high = options.workers
    echo(
        f"{plan.total} image(s) in {options.input}: {plan.already} already translated by "
        f"{model.name} v{model.version} ({options.direction}), {len(plan.todo)} to translate"
        + (f", {len(plan.unreadable)} found unreadable before" if plan.unreadable else "")
        + (f", {len(plan.failures)} refused" if plan.failures else "")
    )
    if options.dry_run:
        pool = f"{low}" if low == high else f"{low} to {high} (autoscaled)"
        gpus = f", {options.gpus_per_worker:g} GPU each" if options.gpus_per_worker else " on CPU"
        ray_at = options.address or os.environ.get("RAY_ADDRESS") or "a private local Ray"
        echo(
            f"would start {pool} translating worker(s){gpus} on {ray_at}, in batches of "
            f"{options.batch_size}, writing {options.format} to {options.output}"
        )
        return None
    tally = Tally(outputs, identity, keys, len(plan.todo) + len(plan.failures), echo)
    tally.failed.update(plan.failures)
    if plan.todo:
        generator = fetch_generator(model, options.direction)
        try:
            _stream(options, model, generator, plan.todo, (inputs, outputs), tally)
        except UserError:
            raise
        except Exception as err:  # the job failed (Ray Data gave up): report what was done
            echo(f"the translation stopped: {err.__class__.__name__}: {str(err)[:500]}")
        finally:
            tally.flush()
    else:
        echo("nothing to translate: every output is there from this model version")
        tally.flush()
    where = {
        "direction": options.direction,
        "input": options.input,
        "output": options.output,
        "format": options.format,
    }
    summary = {"name": model.name, "version": model.version, "run_id": model.run_id}
    report = build_report(
        tally, {**summary, "uri": options.model}, plan.already, plan.unreadable, **where
    )
    write_report(outputs, report)
    run_id = record_translation(model, report)
    counts = report["counts"]
    echo(
        f"translated {counts['translated']}, already there {counts['already_there']}, failed "
        f"{counts['failed']} ({counts['unreadable']} unreadable); "
        f"{report['throughput']['images_per_s']:.1f} images/s; report {options.output.rstrip('/')}"
        f"/_translation.json, MLflow run {run_id}"
    )
    for failure in report["failures"][:10]:
        echo(f"  skipped {failure['input']}: {failure['reason']}")
    return {**report, "mlflow_run_id": run_id}


def _stream(
    options: JobOptions,
    model: Any,
    generator: Any,
    todo: list[tuple[str, str]],
    stores: tuple,
    tally: Tally,
) -> None:
    """Run the Ray Data pipeline over `todo`, feeding each result to `tally`.

    Args:
        options: the command's options.
        model: the resolved model (tracking.translation.ResolvedModel).
        generator: its generator for the direction (tracking.translation.Generator).
        todo: (input key, output key) pairs.
        stores: the input and output stores.
        tally: the counts and the ledger.
    """
    import ray
    import ray.data

    from orchestrator.runtime import connect, driver_runtime_env, shutdown_quietly

    started_here = connect(options.address, runtime_env=driver_runtime_env(), log_to_driver=False)
    try:
        _check_fits(options.gpus_per_worker)
        ray.data.DataContext.get_current().enable_progress_bars = False
        size = options.batch_size
        channels = generator.options["input_nc"]
        low, high = options.workers
        inputs, outputs = stores
        metadata = {"cyclegan-model": model.name, "cyclegan-model-version": model.version}
        items = [{"in_key": i, "out_key": o} for i, o in todo]
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // size, 2000)))
        translator = {
            "generator": generator.state,
            "options": generator.options,
            "multiple": generator.multiple,
            "threads": max(1, int(ray.cluster_resources().get("CPU", 1)) // high),
        }
        pool = {
            "compute": ray.data.ActorPoolStrategy(min_size=low, max_size=high),
            "num_cpus": 1,
            "batch_size": size,
            "batch_format": "numpy",
        }
        decoding = {"store": inputs, "channels": channels}
        writing = {"store": outputs, "fmt": options.format, "metadata": metadata}
        if options.gpus_per_worker:  # decoding and writing in CPU tasks overlap the GPU's batches
            ds = ds.map_batches(
                decode,
                fn_kwargs=decoding,
                batch_size=size,
                num_cpus=DECODE_CPUS,
                batch_format="numpy",
            )
            ds = ds.map_batches(
                Translator,
                fn_constructor_kwargs=translator,
                num_gpus=options.gpus_per_worker,
                **pool,
            )
            ds = ds.map_batches(write, fn_kwargs=writing, batch_size=size, batch_format="numpy")
        else:
            ds = ds.map_batches(
                CpuTranslator,
                fn_constructor_kwargs={**translator, "decoding": decoding, "writing": writing},
                **pool,
            )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for row in zip(batch["in_key"], batch["out_key"], batch["status"], batch["reason"]):
                tally.add(*(str(v) for v in row))
    finally:
        if started_here:
            shutdown_quietly()


def _check_fits(gpus: float) -> None:
    """A translating worker that no node can hold would wait for ever on a cluster that cannot
    grow: say so at once instead."""
    from orchestrator.runtime import alive_nodes, has_autoscaler

    if has_autoscaler():
        return
    nodes = alive_nodes()
    most_gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    most_cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    if gpus > most_gpus:
        raise UserError(
            f"--gpus-per-worker {gpus:g}: no node of this cluster has that many GPUs (the most: "
            f"{most_gpus:g}) and it cannot add nodes; give at most {most_gpus:g} (0: on CPU)"
        )
    if most_cpus < 1:
        raise UserError(
            "no node of this cluster has a whole CPU for a translating worker, and it cannot add "
            "nodes: start one with at least 1 CPU"
        )
