"""`python -m cyclegan COMMAND ...` (the `cyclegan` console command): one module per command.

Each command module has `register(subparsers)` and the `run(args)` it registers, and imports torch
only when its command runs, so that --help and option errors answer at once.
"""

from __future__ import annotations

import argparse

from . import bench, data, evaluate, synth, test, train, translate
from .runner import command_parser, dispatch, program_name, run_cli

COMMANDS = (train, translate, synth, evaluate, data, bench, test)  # in the order --help lists them


PROG = "python -m cyclegan"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    return command_parser(prog, "CycleGAN (Zhu et al., ICCV 2017) on one machine.", COMMANDS)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return dispatch(build_parser(prog), argv)


def entry_point() -> int:
    from ..threads import configure_cpu_threads

    configure_cpu_threads()  # before torch is imported
    prog = program_name("cyclegan")
    return run_cli(lambda argv: main(argv, prog))


__all__ = ["build_parser", "entry_point", "main"]
