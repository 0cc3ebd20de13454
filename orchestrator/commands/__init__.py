"""`python -m orchestrator COMMAND ...` (the `cyclegan-orchestrator` console command): one module
per command group.

    experiment.py   validate, run      a manifest: check it, sweep its tasks (sweep.experiment)
    train.py        train              one CycleGAN on Ray Train (trial.ray_train)
    models.py       models list|show   the registry's versions and champions (tracking.registry)
    serve.py        models serve       MLflow's scoring server for a registered model
    translate.py    translate          images through a registered generator

Each module has `register(subparsers)` and the functions it registers as `run(args) -> exit code`,
and imports Ray, MLflow and torch only when its command runs, so that --help and option errors
answer at once. Parsing, dispatch and UserError -> one line and exit code 2:
cyclegan.commands.runner.
"""

from __future__ import annotations

import argparse

from cyclegan.commands.runner import command_parser, dispatch, program_name, run_cli
from cyclegan.errors import UserError

from . import experiment, models, train, translate

COMMANDS = (train, experiment, models, translate)  # in the order --help lists them
PROG = "python -m orchestrator"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    return command_parser(
        prog, "CycleGAN at scale: Ray Train runs, Ray Tune sweeps, the MLflow registry.", COMMANDS
    )


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    from orchestrator.redact import mask_text

    try:
        return dispatch(build_parser(prog), argv)
    except (
        UserError
    ) as err:  # messages quote what the user wrote: storage and data references, endpoints
        err.args = (mask_text(str(err)),)
        raise


def entry_point() -> int:
    from cyclegan.threads import configure_cpu_threads

    # Before torch is imported; a private local Ray's workers inherit the wait policy (their thread
    # counts follow their CPUs: orchestrator.trial.session).
    configure_cpu_threads(threads=False)
    prog = program_name("orchestrator")
    return run_cli(lambda argv: main(argv, prog))


__all__ = ["build_parser", "entry_point", "main"]
