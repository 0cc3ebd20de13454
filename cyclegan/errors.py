"""User-facing errors: one clear message, a non-zero exit code, no traceback unless --debug."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem the user can fix (bad flag, missing folder, unreadable file...).

    The message names the file, field or URL and says what to do.
    """

    exit_code = 2


class DatasetError(UserError):
    """A dataset that cannot be used as it is (missing folder, unreadable image...).

    Defined here, not in data.py, so that checking a dataset reference does not load torch."""

    def __init__(self, message: str = ""):
        super().__init__(_worker_message(str(message)))


def _worker_message(message: str) -> str:
    """A DataLoader re-raises a worker's exception as `type(text)`, the text holding the worker's
    traceback: keep only the message (the traceback's last line)."""
    if not message.startswith("Caught ") or "Traceback (most recent call last)" not in message:
        return message
    last = message.rstrip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last and "Error" in last.split(": ", 1)[0] else last


def dispatch(parser, argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen subcommand's `run(args)`."""
    args = parser.parse_args(argv)
    if getattr(args, "debug", False):
        logging.getLogger().setLevel(logging.DEBUG)
    return args.run(args)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a CLI entry point, turning UserError (and Ctrl-C) into a message and exit code."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return main(argv)
    except UserError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
