"""`python -m orchestrator COMMAND`: the distributed layer's commands, one module each."""

from __future__ import annotations

import argparse

from cyclegan.commands.runner import dispatch, run_cli
from cyclegan.errors import UserError


def _registrations():
    """Each module adds its own subcommands (`register(subparsers)`)."""
    from . import experiment, models, train

    return [train.register, experiment.register, models.register_models, models.register_translate]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orchestrator",
                                     description="CycleGAN at scale: Ray Train runs, Ray Tune sweeps, the MLflow registry.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _registrations():
        register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..redact import mask_text

    try:
        return dispatch(build_parser(), argv)
    except UserError as err:  # messages quote what the user wrote: storage and data references, endpoints
        err.args = (mask_text(str(err)),)
        raise


def entry_point() -> int:
    from cyclegan.threads import configure_cpu_threads

    # Before torch is imported; a private local Ray's workers inherit the wait policy (their thread
    # counts follow their CPUs: orchestrator.worker).
    configure_cpu_threads(threads=False)
    return run_cli(main)
