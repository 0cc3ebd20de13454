"""The options the registry commands (`models`, `translate`) share: where MLflow is, and --debug."""

from __future__ import annotations

import argparse

TRACKING_HELP = (
    "MLflow tracking/registry URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)"
)


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")


def tracking_uri(args: argparse.Namespace) -> str:
    """The URI --tracking-uri resolves to, checked: a UserError naming it within seconds when it
    does not answer."""
    from orchestrator.tracking.server import check_tracking, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking(uri)
    return uri
