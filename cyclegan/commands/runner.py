"""Running a command line: parse, dispatch to the chosen command, and turn a UserError into one
message and an exit code (no traceback unless --debug). Both CLIs, cyclegan's and the
orchestrator's, run this way."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError
from ..sources.s3_retry import boto_env


def program_name(module: str, argv0: str | None = None) -> str:
    """The command as the user typed it, for usage lines: `python -m MODULE` (Python then runs the
    package's __main__.py), else the console command's own name (`cyclegan`,
    `cyclegan-orchestrator`)."""
    name = Path(sys.argv[0] if argv0 is None else argv0).name
    return f"python -m {module}" if name in ("", "__main__.py") else name


def command_parser(prog: str, description: str, commands) -> argparse.ArgumentParser:
    """A program's parser: `--debug`, then one subcommand per module of `commands` (each has
    `register`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands:
        command.register(subparsers)
    return parser


def dispatch(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen subcommand's `run(args)`."""
    args = parser.parse_args(argv)
    if getattr(args, "debug", False):
        logging.getLogger().setLevel(logging.DEBUG)
    return args.run(args)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a CLI entry point, turning UserError (and Ctrl-C) into a message and exit code."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        # boto3 clients built by others (MLflow's S3 artifact store) retry S3's faults as ours do;
        # the variables also reach Ray's workers and subprocesses. A user's own settings win.
        for name, value in boto_env().items():
            os.environ.setdefault(name, value)
        return main(argv)
    except UserError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def dump_json(data, path: str | None) -> None:
    """A command's --json output."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2, default=str))
