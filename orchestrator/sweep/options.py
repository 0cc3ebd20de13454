"""How one `python -m orchestrator run` goes: where it keeps things, which Ray, what it prints.

The manifest says what to sweep; these are the run's own settings, from the command line
(orchestrator.commands.experiment) or a Python caller, handed to `run_experiment` as one object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.sweep.placement import DEFAULT_RESOURCE_WAIT_S


@dataclass(frozen=True)
class RunOptions:
    """One run's settings (the manifest holds the experiment itself)."""

    storage: str  # trials' checkpoints: a folder or s3://bucket/prefix
    address: str | None = (
        None  # the Ray cluster ('auto', ray://HOST:PORT); None: a private local Ray
    )
    resume: bool = False  # continue an interrupted run of the same manifest and storage
    results_dir: Path = Path("results")  # where <name>.json (the results) goes
    verbose: bool = True  # False: the Ray workers' output stays in Ray's logs
    log_path: Path | None = None  # this run's log, named in the summary (the caller writes it)
    resource_wait_s: float = (
        DEFAULT_RESOURCE_WAIT_S  # how long an autoscaling cluster may take to fit a trial
    )
