"""Errors the user can fix. The command lines show them as one message and an exit code, no
traceback unless --debug (cyclegan/commands/runner.py)."""

from __future__ import annotations


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
