"""What the main job shows: the user's lines on the terminal, everything else in the run's log file.

While a sweep runs, this process's stdout and stderr (file descriptors 1 and 2, so that Ray's and
MLflow's C++ and Python output, progress bars and library prints are caught too) go to the run's
log file; `echo` writes to the terminal and to the file. Warnings and errors of this project's own
loggers still reach the terminal. `--verbose` leaves the terminal as it is: everything shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

OWN_LOGGERS = ("orchestrator", "cyclegan")
# Set before MLflow reads them: no progress bar per artifact download while registering.
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


class _OwnWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and record.name.split(".")[0] in OWN_LOGGERS


class RunConsole:
    """`with console.captured(): ... console.echo(line)` (see the module docstring)."""

    def __init__(self, log_path: Path, verbose: bool = False):
        self.log_path, self.verbose = Path(log_path), verbose
        self._terminal = None  # a stream on the terminal's stdout while captured
        self._log = None

    def echo(self, text: str = "") -> None:
        if self._terminal is None:
            print(text, flush=True)
            return
        self._terminal.write(text + "\n")
        self._terminal.flush()
        self._log.write(text + "\n")
        self._log.flush()

    @contextlib.contextmanager
    def captured(self):
        if self.verbose:
            yield self
            return
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        self._log = open(self.log_path, "a", buffering=1)
        self._terminal = _terminal(sys.stdout, saved[0])
        handler = logging.StreamHandler(_terminal(sys.stderr, saved[1]))
        handler.addFilter(_OwnWarnings())
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        os.dup2(self._log.fileno(), 1)
        os.dup2(self._log.fileno(), 2)
        root.addHandler(handler)
        try:
            yield self
        finally:
            root.removeHandler(handler)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            for stream in (handler.stream, self._terminal):
                if stream not in (sys.stdout, sys.stderr):
                    stream.close()
            self._log.close()
            self._terminal = self._log = None


def _terminal(stream, saved_fd: int):
    """Where the user's lines go once fds 1 and 2 point at the log: the saved terminal, or `stream`
    itself where it is not a file descriptor (a test's captured sys.stdout)."""
    try:
        if stream.fileno() in (1, 2):
            return os.fdopen(os.dup(saved_fd), "w", buffering=1)
    except (AttributeError, OSError, ValueError):
        pass
    return stream
