"""S3 faults in the small: what is retried and for how long, one log line per kind of fault,
storage paths joined before the query string, and a trial that failed for good reported as
`failed` (and in the exit code) even when Ray could not upload its error."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from cyclegan.errors import UserError
from cyclegan.sources import s3_retry
from cyclegan.sources.s3_retry import (
    boto_env,
    is_transient,
    pyarrow_attempts,
    retry_budget_s,
    retrying,
)
from orchestrator.config.plan import load_manifest
from orchestrator.search.guards import SweepGuard
from orchestrator.storage.location import parse_storage, storage_child
from orchestrator.sweep import records
from orchestrator.sweep.experiment import _failed_trials
from orchestrator.sweep.results import TaskResult, TrialRecord


def test_the_retry_budget_is_one_setting_with_a_default_of_minutes(monkeypatch):
    monkeypatch.delenv("CYCLEGAN_S3_RETRY_S", raising=False)
    assert retry_budget_s() == 300
    assert boto_env() == {"AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "35"}
    assert pyarrow_attempts() == 14  # 25 ms * 2**n waits adding up to about 300 s
    monkeypatch.setenv("CYCLEGAN_S3_RETRY_S", "30")
    assert boto_env()["AWS_MAX_ATTEMPTS"] == "8" and pyarrow_attempts() == 11
    monkeypatch.setenv("CYCLEGAN_S3_RETRY_S", "soon")
    with pytest.raises(UserError, match="CYCLEGAN_S3_RETRY_S='soon'"):
        retry_budget_s()


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_client_error("SlowDown", 503), True),
        (_client_error("InternalError", 500), True),
        (OSError("AWS Error SLOW_DOWN during CompleteMultipartUpload operation"), True),
        (OSError("AWS Error NETWORK_CONNECTION during GetObject: curlCode: 56"), True),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (_client_error("AccessDenied", 403), False),
        (_client_error("NoSuchKey", 404), False),
        (FileNotFoundError("runs/exp/trials/t-500/best/best.json"), False),
        (UserError("storage: bad"), False),
    ],
)
def test_throttling_resets_and_5xx_are_transient_and_nothing_else(error, transient):
    assert is_transient(error) is transient


def test_retrying_backs_off_with_jitter_and_logs_each_kind_of_fault_once(monkeypatch, caplog):
    monkeypatch.setattr(s3_retry, "_seen", set())
    failures = [OSError("AWS Error SLOW_DOWN")] * 3 + [ConnectionResetError("reset")] * 2
    sleeps: list[float] = []

    def call():
        if failures:
            raise failures.pop(0)
        return "done"

    with caplog.at_level(logging.WARNING, logger="cyclegan.sources.s3_retry"):
        assert retrying(call, "uploading s3://b/k", sleep=sleeps.append) == "done"
    assert len(sleeps) == 5 and all(0 <= s <= 0.2 * 2**i for i, s in enumerate(sleeps))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("S3 throttling while uploading s3://b/k")
    assert lines[1].startswith("S3 connection reset") and "CYCLEGAN_S3_RETRY_S" in lines[1]


def test_retrying_stops_at_once_on_a_real_error_and_after_the_budget(monkeypatch):
    sleeps: list[float] = []

    def denied():
        raise _client_error("AccessDenied", 403)

    with pytest.raises(ClientError):
        retrying(denied, "x", sleep=sleeps.append)
    assert sleeps == []
    monkeypatch.setenv("CYCLEGAN_S3_RETRY_S", "0")

    def throttled():
        raise OSError("AWS Error SLOW_DOWN")

    with pytest.raises(OSError, match="SLOW_DOWN"):
        retrying(throttled, "x", sleep=sleeps.append)
    assert sleeps == []


@pytest.mark.parametrize(
    ("uri", "child"),
    [
        ("s3://b/p", "s3://b/p/exp/trials"),
        ("s3://b", "s3://b/exp/trials"),
        (
            "s3://b/p/?endpoint_override=127.0.0.1:9000&scheme=http",
            "s3://b/p/exp/trials?endpoint_override=127.0.0.1:9000&scheme=http",
        ),
        ("/shared/runs/", "/shared/runs/exp/trials"),
        ("file:///shared/runs", "file:///shared/runs/exp/trials"),
    ],
)
def test_a_child_of_a_storage_keeps_its_query_string_at_the_end(uri, child):
    assert storage_child(uri, "exp", "trials") == child
    if "endpoint_override" in uri:
        parsed = parse_storage(child)
        assert parsed.path == "b/p/exp/trials" and parsed.endpoint == "http://127.0.0.1:9000"


MANIFEST = """\
name: m
defaults: {train: {netG: resnet_1blocks, load_size: 32, crop_size: 32, n_epochs: 2, n_epochs_decay: 0}}
search: {metric: cycle_l1}
tasks:
  - {name: t, data: "synthetic://colorshift?size=32"}
"""  # noqa: E501


class _Board:
    """The progress board's snapshot, as Tune's callbacks left it."""

    def __init__(self, trials: dict[str, str]):
        self.snapshot = SimpleNamespace(remote=lambda: {"t": {"trials": trials}})


def test_a_trial_that_failed_for_good_is_failed_even_without_its_error_file(tmp_path, monkeypatch):
    monkeypatch.setattr(records.ray, "get", lambda value: value)
    (tmp_path / "m.yaml").write_text(MANIFEST)
    plan = load_manifest(tmp_path / "m.yaml").plans[0]
    guard = SweepGuard("cycle_l1", "min", None)
    failed = records.failed_for_good(_Board({"a": "failed", "b": "finished", "c": "running"}), "t")
    assert failed == {"a"}
    # Ray could not upload the error file: Tune's result has no error, 1 epoch of 2
    result = SimpleNamespace(
        metrics={"trial_id": "a", "epoch": 1}, metrics_dataframe=None, error=None, config={}
    )
    storage = parse_storage(str(tmp_path / "runs"))
    lost = records._record(result, plan, None, guard, storage, "a" in failed)
    assert lost.status == "failed" and lost.error == records.LOST_ERROR and lost.note is None
    stopped = records._record(result, plan, None, guard, storage, False)
    assert stopped.status == "stopped" and "scheduler" in stopped.note


def test_a_failed_trial_makes_the_run_fail_unless_the_task_allows_it(tmp_path):
    (tmp_path / "m.yaml").write_text(MANIFEST)
    plans = load_manifest(tmp_path / "m.yaml").plans
    trial = TrialRecord(
        trial_id="a", params={}, status="failed", metric=None, epochs=1, history=[], checkpoint=None
    )
    ok = TrialRecord(
        trial_id="b",
        params={},
        status="finished",
        metric=1.0,
        epochs=2,
        history=[],
        checkpoint=None,
    )
    results = [TaskResult("t", "d", "cycle_l1", "min", [trial, ok], "b")]
    assert _failed_trials(results, plans) == ["t/a"]
    (tmp_path / "m.yaml").write_text(
        MANIFEST.replace("{metric: cycle_l1}", "{metric: cycle_l1, allow_failed_trials: true}")
    )
    assert _failed_trials(results, load_manifest(tmp_path / "m.yaml").plans) == []
