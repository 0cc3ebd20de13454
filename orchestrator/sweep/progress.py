"""Live progress of a sweep: per task, trials running / finished / stopped / diverged / failed and
the best so far.

The sweep's Tune run feeds a small Ray actor through one Tune callback per task
(orchestrator.sweep.router.TaskCallbacks); the driver polls it and prints one line per task whenever
something changed.
"""

from __future__ import annotations

import math
import time
from typing import Any

import ray
from ray.tune import Callback

from orchestrator.config.baseline import baseline_trial
from orchestrator.search.guards import DIVERGED
from orchestrator.storage.best import BEST_EPOCH, best_key
from orchestrator.sweep.results import STATUSES
from orchestrator.sweep.router import without_task


def ending(last: dict, epoch: int, total_epochs: int) -> tuple[str, str]:
    """How a trial that Tune saw end without an error ended, after `epoch` of its `total_epochs`
    epochs (`last`: its last result): its status and the words for it."""
    if last.get(DIVERGED):
        return "diverged", f"diverged {last[DIVERGED]}"
    if epoch < total_epochs:
        return "stopped", f"stopped early by the scheduler after {epoch} epoch(s)"
    return "finished", f"finished after {epoch} epoch(s)"


@ray.remote(num_cpus=0)
class ProgressBoard:
    def __init__(self):
        self.tasks: dict[str, dict] = {}

    def register(self, task: str, metric: str, mode: str, total: int) -> None:
        self.tasks[task] = {
            "metric": metric,
            "mode": mode,
            "total": total,
            "trials": {},
            "best": None,
            "best_trial": None,
            "ended": [],
            "stopped": None,
        }

    def update(
        self,
        task: str,
        trial: str,
        status: str,
        value: float | None = None,
        note: str | None = None,
    ) -> None:
        """Record a trial's news.

        Args:
            task: the trial's task.
            trial: the trial's id.
            status: what the trial is doing now ("running", "finished", ...).
            value: its latest value of the task's metric, if it reported one.
            note: a line for the summary when the trial ended (or failed and is retried).
        """
        state = self.tasks[task]
        state["trials"][trial] = status
        if note is not None:  # one line per trial that ended (or failed and is retried)
            state["ended"].append(f"  {task}: trial {trial} {note}")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        best = state["best"]
        if best is None or (value < best if state["mode"] == "min" else value > best):
            state["best"], state["best_trial"] = value, trial

    def stop(self, task: str, reason: str) -> None:
        """The task's sweep ended early (orchestrator.search.guards): the trials it did not create
        never will be."""
        self.tasks[task]["stopped"] = reason

    def snapshot(self) -> dict:
        return self.tasks


class ProgressCallback(Callback):
    """Tune callback forwarding trial events of one task to the board.

    It holds the board's name, not its handle: Tune pickles its callbacks into the experiment
    (tuner.pkl), and a handle to the board of a driver that has since died cannot be unpickled
    when the sweep is resumed. Progress is only shown, so a board that is gone is ignored."""

    def __init__(
        self,
        board_name: str,
        task: str,
        metric: str,
        total_epochs: int,
        baseline: dict[str, Any] | None = None,
    ):
        self.board_name, self.task, self.metric, self.total_epochs = (
            board_name,
            task,
            metric,
            total_epochs,
        )
        self.baseline = baseline
        self._board = None
        self._seen_restored = False

    def __getstate__(self):
        return {**self.__dict__, "_board": None, "_seen_restored": False}

    def _send(self, *args) -> None:
        try:
            if self._board is None:
                self._board = ray.get_actor(self.board_name)
            self._board.update.remote(self.task, *args)
        except ValueError:  # no such actor (any more)
            pass

    def on_step_begin(self, iteration, trials, **info):
        # A resumed sweep starts with the trials that ended before it was interrupted: show them
        # too.
        if not self._seen_restored:
            self._seen_restored = True
            for trial in trials:
                if trial.status == "TERMINATED":
                    self.on_trial_complete(iteration, trials, trial)
                elif trial.status == "ERROR":
                    self.on_trial_error(iteration, trials, trial)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._send(trial.trial_id, "running")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        """Tune's hook after each report.

        Args:
            iteration: Tune's loop count; trials: every trial of the run.
            trial: the trial that reported; result: its report.
            **info: Tune's other keyword arguments.
        """
        self._send(trial.trial_id, "running", result.get(best_key(self.metric)))

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        epoch = last.get("epoch", self.total_epochs)
        value = last.get(best_key(self.metric))
        scored = isinstance(value, (int, float)) and not math.isnan(value)
        best = f", best {self.metric} {value:.4g} at epoch {last.get(BEST_EPOCH)}" if scored else ""
        status, how = ending(last, epoch, self.total_epochs)
        self._send(
            trial.trial_id,
            status,
            value if scored else None,
            f"{how}{best}{self._label(trials, trial)}",
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        self._send(
            trial.trial_id,
            "failed",
            None,
            f"failed{self._label(trials, trial)}: its error is in the results file",
        )

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._send(
            trial.trial_id, "running", None, "failed; Tune retries it from its last checkpoint"
        )

    def _label(self, trials, trial) -> str:
        """The trial's hyperparameters, and whether it is the baseline."""
        pairs = [(t.trial_id, getattr(t, "config", None) or {}) for t in trials] or [
            (trial.trial_id, getattr(trial, "config", None) or {})
        ]
        mark = ", the baseline" if baseline_trial(pairs, self.baseline) == trial.trial_id else ""
        config = without_task(getattr(trial, "config", None))
        params = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items()
        )
        return f" ({params}{mark})" if params else (f" ({mark.removeprefix(', ')})" if mark else "")


def describe(snapshot: dict) -> list[str]:
    lines = []
    for task, state in snapshot.items():
        counts: dict[str, int] = {}
        for status in state["trials"].values():
            counts[status] = counts.get(status, 0) + 1
        parts = [f"{counts[s]} {s}" for s in ("running", *STATUSES) if counts.get(s)]
        pending = state["total"] - len(state["trials"])
        if state.get("stopped"):
            parts.append(f"stopped early: {state['stopped']}")
        elif pending > 0:
            parts.append(f"{pending} pending")
        best = f", best {state['metric']} {state['best']:.4g}" if state["best"] is not None else ""
        lines.append(f"  {task}: {', '.join(parts) or 'starting'}{best}")
    return lines


def follow(board, wait_done, interval: float = 5.0, echo=print) -> None:
    """Print the board whenever it changes until the sweep is over. `wait_done(timeout)` blocks up
    to `timeout` seconds and says whether it is: the last state is printed as soon as it ends."""
    last: list[str] = []
    shown: dict[str, int] = {}  # per task, how many of its `ended` lines were printed
    finished = False
    while True:
        snapshot = ray.get(board.snapshot.remote())
        for task, state in snapshot.items():
            ended = state.get("ended", [])
            for line in ended[shown.get(task, 0) :]:
                echo(line)
            shown[task] = len(ended)
        lines = describe(snapshot)
        if lines != last:
            echo(f"[{time.strftime('%H:%M:%S')}] progress\n" + "\n".join(lines))
            last = lines
        if finished:
            return
        finished = wait_done(interval)
