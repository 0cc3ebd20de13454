"""A batch translation's bookkeeping on the driver: the counts as results come in, the progress
line, the ledger of what this run wrote (so a rerun skips it), and `_translation.json`."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .stages import OK, UNREADABLE
from .stores import LEDGER_DIR, REPORT_NAME, Store

LEDGER_EVERY = 500  # outputs per ledger part (and at least one part every LEDGER_EVERY_S)
LEDGER_EVERY_S = 30.0
PROGRESS_EVERY_S = 5.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Tally:
    """The job's counts and the ledger it writes as results arrive.

    `identity` is the model version and direction the ledger records; `sizes` each input key's
    size (kept with an unreadable one); `todo` the number of images this run translates; `echo`
    prints the progress line."""

    outputs: Store
    identity: str
    sizes: dict[str, int]
    todo: int
    echo: Any = print
    translated: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # input key -> reason
    unreadable: int = 0  # of the failed: images that cannot be decoded (or are too large)
    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=_now)
    _pending: list[str] = field(default_factory=list)
    _unreadable: dict[str, list] = field(default_factory=dict)
    _parts: int = 0
    _flushed: float = field(default_factory=time.monotonic)
    _shown: float = field(default_factory=time.monotonic)
    _first: float | None = None  # when the first result came
    _run: str = field(default_factory=lambda: f"{int(time.time())}-{uuid.uuid4().hex[:8]}")

    def add(self, in_key: str, out_key: str, status: str, reason: str) -> None:
        self._first = self._first or time.monotonic()
        if status == OK:
            self.translated += 1
            self._pending.append(out_key)
        else:
            self.failed[in_key] = reason
            if status == UNREADABLE:
                self.unreadable += 1
                self._unreadable[in_key] = [self.sizes.get(in_key, -1), reason]
        now = time.monotonic()
        if (
            len(self._pending) + len(self._unreadable) >= LEDGER_EVERY
            or now - self._flushed >= LEDGER_EVERY_S
        ):
            self.flush()
        if now - self._shown >= PROGRESS_EVERY_S:
            self._shown = now
            self.echo(self.progress_line())

    def flush(self) -> None:
        """Write what was translated since the last part as one ledger part (atomically)."""
        self._flushed = time.monotonic()
        if not self._pending and not self._unreadable:
            return
        self._parts += 1
        part = {"model": self.identity, "outputs": self._pending, "unreadable": self._unreadable}
        key = f"{LEDGER_DIR}/{self._run}-{self._parts:05d}.json"
        self.outputs.write(key, json.dumps(part).encode())
        self._pending, self._unreadable = [], {}

    @property
    def rate(self) -> float:
        """Images per second since the first result (the workers' start-up left out)."""
        done = self.translated + len(self.failed)
        if self._first is None or done < 2:
            return 0.0
        return (done - 1) / max(time.monotonic() - self._first, 1e-9)

    def progress_line(self) -> str:
        done = self.translated + len(self.failed)
        rate = self.rate
        eta = f"about {_duration((self.todo - done) / rate)} left" if rate else "time left unknown"
        return (
            f"translated {self.translated}/{self.todo}, failed {len(self.failed)}, "
            f"{rate:.1f} images/s, {eta}"
        )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def build_report(
    tally: Tally, model: dict[str, Any], already: int, known: dict[str, str], **where: str
) -> dict:
    """The `_translation.json` content.

    Args:
        tally: this run's counts.
        model: the model's name, version, run id and URI.
        already: outputs already there from this model version.
        known: the inputs an earlier run found unreadable (not read again), with why.
        where: direction, input, output, format.
    """
    elapsed = time.monotonic() - tally.started
    failed = {**known, **tally.failed}
    failures = [{"input": k, "reason": v} for k, v in sorted(failed.items())]
    return {
        "model": model,
        **where,
        "counts": {
            "translated": tally.translated,
            "already_there": already,
            "failed": len(failed),
            "unreadable": tally.unreadable + len(known),
            # outputs this run should have written and did not, unreadable inputs aside
            "missing": tally.todo - tally.translated - tally.unreadable,
        },
        # every readable image translated: the job's exit status is 0
        "complete": tally.translated + tally.unreadable == tally.todo,
        "failures": failures,
        "throughput": {
            # from the plan to the end: Ray's start and the workers' model load included
            "images_per_s": round(tally.translated / elapsed, 3) if elapsed > 0 else 0.0,
            "seconds": round(elapsed, 3),
            # from the first result on: the pipeline's own pace
            "streaming_images_per_s": round(tally.rate, 3),
        },
        "start": tally.started_at,
        "end": _now(),
    }


def write_report(outputs: Store, report: dict) -> None:
    outputs.write(REPORT_NAME, json.dumps(report, indent=2).encode())
