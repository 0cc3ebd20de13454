"""`python -m orchestrator models list|show|serve`: the registered generators, their versions and
champions."""

from __future__ import annotations

import argparse

from . import serve
from .registry_options import add_registry_options, tracking_uri


def register(subparsers) -> None:
    models = subparsers.add_parser(
        "models",
        help="registered generators: list them, show one task's versions",
        description="Look up the CycleGAN models in the MLflow model registry.",
    )
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="every <prefix>* model with its champion version, metric, dataset and date"
    )
    listing.add_argument(
        "--prefix", default="cyclegan-", help="registered model name prefix (default: cyclegan-)"
    )
    add_registry_options(listing)
    listing.set_defaults(run=run_list)
    show = actions.add_parser(
        "show", help="one task's versions, metrics, hyperparameters and which one is champion"
    )
    show.add_argument(
        "task", help="task name (the model is <prefix><task>) or the full registered model name"
    )
    show.add_argument(
        "--prefix", default="cyclegan-", help="registered model name prefix (default: cyclegan-)"
    )
    add_registry_options(show)
    show.set_defaults(run=run_show)
    serve.register(actions)


def run_list(args: argparse.Namespace) -> int:
    from orchestrator.redact import mask_text
    from orchestrator.tracking.models import list_models

    uri = tracking_uri(args)
    models = list_models(uri, args.prefix)
    if not models:
        print(f"no registered models named {args.prefix}* at {mask_text(uri)}")
        return 0
    rows = [["MODEL", "CHAMPION", "METRIC", "VALUE", "DATASET", "REGISTERED", "LATEST"]]
    for m in models:
        c = m.champion
        rows.append(
            [
                m.name,
                f"v{c.version}" if c else "-",
                c.metric or "-" if c else "-",
                _number(c.value) if c else "-",
                (c.dataset or "-") if c else "-",
                _date(c.created) if c else "-",
                f"v{m.latest_version}" if m.latest_version else "-",
            ]
        )
    print(_table(rows))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from orchestrator.tracking.models import show_model

    info = show_model(tracking_uri(args), args.task, args.prefix)
    c = info.champion
    print(f"{info.name}  (task {info.task}, {len(info.versions)} version(s))")
    print(
        f"champion: v{c.version}  {c.metric}={_number(c.value)}{_interval(c.interval)} ({c.mode})"
        f"  dataset {c.dataset or '-'}  run {c.run_id}"
        if c
        else "champion: none"
    )
    if c and c.untranslated is not None:
        print(f"  untranslated test images: {c.metric}={_number(c.untranslated)}")
    if c and c.protocol:
        print(f"  protocol: {c.protocol}")
    rows = [
        [
            "VERSION",
            "ALIASES",
            "METRIC",
            "VALUE [95% INTERVAL]",
            "TRIAL",
            "RUN",
            "CREATED",
            "HYPERPARAMETERS",
            "DECISION",
        ]
    ]
    for v in info.versions:
        hp = " ".join(f"{k}={val}" for k, val in sorted(v.hyperparameters.items()))
        rows.append(
            [
                f"v{v.version}",
                ",".join(v.aliases) or "-",
                v.metric or "-",
                _number(v.value) + _interval(v.interval),
                v.trial or "-",
                (v.run_id or "-")[:12],
                _date(v.created),
                hp[:80] or "-",
                v.decision or "-",
            ]
        )
    print(_table(rows))
    return 0


def _date(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _interval(interval) -> str:
    return f" [{interval[0]:.4g}, {interval[1]:.4g}]" if interval else ""


def _number(value) -> str:
    return f"{value:.4g}" if value is not None else "-"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    )
