"""Live progress of a sweep: per task, trials running / finished / stopped / failed and the best so far.

Each task's Tune driver feeds a small Ray actor through a Tune callback; the main
driver polls it and prints one line per task whenever something changed.
"""

from __future__ import annotations

import math
import time

import ray
from ray.tune import Callback


@ray.remote(num_cpus=0)
class ProgressBoard:
    def __init__(self):
        self.tasks: dict[str, dict] = {}

    def register(self, task: str, metric: str, mode: str, total: int) -> None:
        self.tasks[task] = {"metric": metric, "mode": mode, "total": total, "trials": {}, "best": None, "best_trial": None}

    def update(self, task: str, trial: str, status: str, value: float | None = None) -> None:
        state = self.tasks[task]
        state["trials"][trial] = status
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        best = state["best"]
        if best is None or (value < best if state["mode"] == "min" else value > best):
            state["best"], state["best_trial"] = value, trial

    def snapshot(self) -> dict:
        return self.tasks


class ProgressCallback(Callback):
    """Tune callback forwarding trial events of one task to the board.

    It holds the board's name, not its handle: Tune pickles its callbacks into the experiment
    (tuner.pkl), and a handle to the board of a driver that has since died cannot be unpickled
    when the sweep is resumed. Progress is only shown, so a board that is gone is ignored."""

    def __init__(self, board_name: str, task: str, metric: str, total_epochs: int):
        self.board_name, self.task, self.metric, self.total_epochs = board_name, task, metric, total_epochs
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
        # A resumed sweep starts with the trials that ended before it was interrupted: show them too.
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
        self._send(trial.trial_id, "running", result.get(self.metric))

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        stopped = last.get("epoch", self.total_epochs) < self.total_epochs
        self._send(trial.trial_id, "stopped" if stopped else "finished", last.get(self.metric))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._send(trial.trial_id, "failed")


def describe(snapshot: dict) -> list[str]:
    lines = []
    for task, state in snapshot.items():
        counts: dict[str, int] = {}
        for status in state["trials"].values():
            counts[status] = counts.get(status, 0) + 1
        parts = [f"{counts[s]} {s}" for s in ("running", "finished", "stopped", "failed") if counts.get(s)]
        pending = state["total"] - len(state["trials"])
        if pending > 0:
            parts.append(f"{pending} pending")
        best = f", best {state['metric']} {state['best']:.4g}" if state["best"] is not None else ""
        lines.append(f"  {task}: {', '.join(parts) or 'starting'}{best}")
    return lines


def follow(board, wait_done, interval: float = 5.0, echo=print) -> None:
    """Print the board whenever it changes until the sweep is over. `wait_done(timeout)` blocks up to
    `timeout` seconds and says whether it is: the last state is printed as soon as it ends."""
    last: list[str] = []
    finished = False
    while True:
        lines = describe(ray.get(board.snapshot.remote()))
        if lines != last:
            echo(f"[{time.strftime('%H:%M:%S')}] progress\n" + "\n".join(lines))
            last = lines
        if finished:
            return
        finished = wait_done(interval)
