"""How every S3 call of the project rides out S3's routine faults: throttling (503 SlowDown, 500),
connection resets and bodies cut short.

One setting bounds the time spent retrying one call: `$CYCLEGAN_S3_RETRY_S` (seconds, default 300).
From it come
- the boto3 clients' retries (`boto_retries`, also exported as AWS_MAX_ATTEMPTS/AWS_RETRY_MODE to
  processes that build their own clients, such as MLflow's artifact store: `boto_env`);
- pyarrow's S3 retries (`pyarrow_attempts`, orchestrator.storage.location);
- `retrying`, which repeats a whole operation (an upload, a download, a download whose body came
  back short) with exponential backoff and full jitter until the time is spent.

A fault is logged once per kind and process (`note_fault`), not at each attempt. An endpoint that
is not there at all (a typo, a server not started) is no fault to ride out: `unreachable` says so
within seconds, where botocore would retry a refused connection for the whole budget.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from ..errors import UserError

log = logging.getLogger(__name__)

RETRY_ENV = "CYCLEGAN_S3_RETRY_S"
DEFAULT_RETRY_S = 300.0
FIRST_DELAY_S, MAX_DELAY_S = 0.2, 20.0
# What a transient S3 failure looks like in the text of an error (pyarrow's OSError, botocore's).
_TRANSIENT = (
    "slowdown",
    "slow down",
    "slow_down",
    "throttl",
    "service_unavailable",
    "internal_failure",
    "503",
    "500",
    "internalerror",
    "service unavailable",
    "connection reset",
    "connection aborted",
    "connection was closed",
    "broken pipe",
    "curlcode",
    "network_connection",
    "timed out",
    "timeout",
    "incomplete",
    "short read",
    "partial",
    "endpoint connection",
    "remotedisconnected",
)
_seen: set[str] = set()
_reachable: set[tuple[str, int]] = set()  # endpoints that answered once in this process
_seen_lock = threading.Lock()
T = TypeVar("T")


def retry_budget_s() -> float:
    """Seconds one S3 call may spend retrying (`$CYCLEGAN_S3_RETRY_S`)."""
    value = os.environ.get(RETRY_ENV, "").strip()
    if not value:
        return DEFAULT_RETRY_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise UserError(f"${RETRY_ENV}={value!r}: give the seconds S3 calls may retry (e.g. 300)")
    return seconds


def boto_attempts(budget_s: float | None = None) -> int:
    """botocore's standard mode waits up to 2**n s (capped at 20 s, jittered: ~10 s on average)
    before attempt n+1: attempts that fill about `budget_s`."""
    budget = retry_budget_s() if budget_s is None else budget_s
    return 5 + int(budget // 10)


def boto_retries() -> dict:
    """The `retries` of a botocore Config: standard mode (backoff with jitter on throttling,
    5xx and connection errors), attempts from the budget."""
    return {"mode": "standard", "max_attempts": boto_attempts()}


def boto_env() -> dict[str, str]:
    """The same for processes that build their own boto3 clients (MLflow's S3 artifact store)."""
    return {"AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": str(boto_attempts())}


def pyarrow_attempts(budget_s: float | None = None) -> int:
    """The AWS C++ SDK's default strategy waits 25 ms * 2**n before attempt n+1 (no cap):
    attempts whose waits add up to about `budget_s`."""
    budget = retry_budget_s() if budget_s is None else budget_s
    return max(3, math.ceil(math.log2(budget / 0.025 + 1)))


def is_transient(err: BaseException) -> bool:
    """Throttling, a 5xx, a reset or a short body: worth another attempt."""
    if isinstance(err, (FileNotFoundError, PermissionError, UserError)):
        return False
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    text = f"{type(err).__name__} {err}".lower()
    return any(word in text for word in _TRANSIENT)


def fault_kind(err: BaseException) -> str:
    """A short name of the fault, for logging it once."""
    text = f"{type(err).__name__} {err}".lower()
    for kind, words in (
        ("throttling", ("slowdown", "slow down", "slow_down", "throttl", "503")),
        ("server error", ("500", "internalerror", "internal_failure", "service_unavailable")),
        ("short read", ("incomplete", "short read", "partial")),
        ("timeout", ("timed out", "timeout")),
    ):
        if any(word in text for word in words):
            return kind
    return "connection reset"


def note_fault(kind: str, what: str, detail: str = "") -> None:
    """Log a fault the first time this process meets its kind; later ones are retried silently."""
    with _seen_lock:
        if kind in _seen:
            return
        _seen.add(kind)
    log.warning(
        "S3 %s while %s%s; retrying (this and later %s faults, for up to %g s per call: $%s)",
        kind,
        what,
        f" ({detail})" if detail else "",
        kind,
        retry_budget_s(),
        RETRY_ENV,
    )


def retrying(
    call: Callable[[], T],
    what: str,
    transient: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, repeated while it fails with a transient error and `$CYCLEGAN_S3_RETRY_S`
    allows; the last error is raised as it is."""
    deadline = time.monotonic() + retry_budget_s()
    attempt = 0
    while True:
        try:
            return call()
        except Exception as err:
            if not transient(err):
                raise
            delay = random.uniform(0, min(MAX_DELAY_S, FIRST_DELAY_S * 2**attempt))
            if time.monotonic() + delay > deadline:
                raise
            note_fault(fault_kind(err), what, str(err).splitlines()[0][:200] if str(err) else "")
            attempt += 1
            sleep(delay)


def unreachable(endpoint: str, attempts: int = 3, timeout_s: float = 3.0) -> str | None:
    """Why nothing accepts a connection at `endpoint` (a URL) after a few quick tries, or None
    when something does (remembered: later calls cost nothing)."""
    parts = urlsplit(endpoint)
    address = (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    reason = None
    for attempt in range(attempts):
        if address in _reachable:
            return None
        try:
            socket.create_connection(address, timeout=timeout_s).close()
            _reachable.add(address)
            return None
        except OSError as err:
            reason = err.strerror or type(err).__name__
            time.sleep(0.5 * 2**attempt if attempt + 1 < attempts else 0)
    return reason
