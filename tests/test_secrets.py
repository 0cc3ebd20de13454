"""Credentials never shown or stored: masking (table-driven), the race with MLflow's telemetry thread,
the Ray runtime env, the stored training config, and S3 endpoints in messages."""

from __future__ import annotations

import os
import threading

import pytest

from cyclegan.urls import mask_userinfo
from orchestrator.redact import environ_snapshot, mask_text

SECRET = "s3cr3tVALUE"

# (text, what must be gone, what must stay)
MASKED = [
    ("https://alice:s3cr3tVALUE@mlflow.example.com/path", SECRET, "https://alice:***@mlflow.example.com/path"),
    ("s3://AKIAABCDEFGHIJKLMNOP:s3cr3tVALUE@bucket/prefix", SECRET, "@bucket/prefix"),
    ("https://s3cr3tVALUE@github.com/org/repo.git", SECRET, "https://***@github.com/org/repo.git"),
    ("http://user:pa ss s3cr3tVALUE@minio:9000/x", SECRET, "http://user:***@minio:9000/x"),
    ("http://user:p@ss@s3cr3tVALUE@minio:9000", SECRET, "http://user:***@minio:9000"),
    ("postgresql://me:s3cr3tVALUE@db:5432/mlflow and http://host/x", SECRET, "@db:5432/mlflow and http://host/x"),
    ("{'aws_secret_access_key': 's3cr3tVALUE', 'region': 'us-east-1'}", SECRET, "'region': 'us-east-1'"),
    ('{"password": "with spaces s3cr3tVALUE", "user": "bob"}', SECRET, '"password": "***", "user": "bob"'),
    ('{"token":"s3cr3tVALUE"}', SECRET, '{"token":"***"}'),
    ("Authorization: Bearer s3cr3tVALUE.more", SECRET, "Authorization: Bearer ***"),
    ("headers={'Authorization': 'Basic s3cr3tVALUE=='}", SECRET, "'Authorization': '***'"),
    ("sent Bearer s3cr3tVALUE to the server", SECRET, "Bearer ***"),
    ("https://acct.blob.core.windows.net/c/f?sv=2020&sig=s3cr3tVALUE&se=2030", SECRET, "sv=2020&sig=***&se=2030"),
    ("odbc: Server=x;Uid=u;Pwd=s3cr3tVALUE;", SECRET, "Pwd=***;"),
    ("https://h/x?token=s3cr3tVALUE&page=2", SECRET, "token=***&page=2"),
    ("https://h/x?X-Amz-Signature=s3cr3tVALUE&X-Amz-Credential=AKIA", SECRET, "X-Amz-Signature=***"),
    ("MLFLOW_TRACKING_PASSWORD=s3cr3tVALUE", SECRET, "MLFLOW_TRACKING_PASSWORD=***"),
    ("key id AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOP", "key id ***"),
]

UNCHANGED = [
    "plain text, epoch 3",
    "s3://bucket/prefix/horse@2x.png",
    "http://127.0.0.1:9000/bucket",
    "synthetic://colorshift?size=32&n_train=10",
    "design=resnet signal=3 pwdx=1",
    "see a@b.com",
    "loss_G=1.25 fid=77.0",
]


@pytest.mark.parametrize("text,secret,kept", MASKED)
def test_mask_text_hides_the_secret_and_keeps_the_rest(text, secret, kept):
    masked = mask_text(text)
    assert secret not in masked, masked
    assert kept in masked, masked


@pytest.mark.parametrize("text", UNCHANGED)
def test_mask_text_leaves_plain_text_alone(text):
    assert mask_text(text) == text


def test_mask_userinfo_alone_is_what_the_library_uses():
    assert mask_userinfo("http://k:s3cr3tVALUE@127.0.0.1:9000") == "http://k:***@127.0.0.1:9000"
    assert mask_userinfo("http://127.0.0.1:9000") == "http://127.0.0.1:9000"


def test_env_secret_values_are_masked_anywhere(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "canary-pw-123")
    assert mask_text("the value canary-pw-123 leaked") == "the value *** leaked"


def test_masking_survives_another_thread_changing_the_environment():
    """MLflow's telemetry thread sets and unsets _MLFLOW_TELEMETRY_SESSION_ID while we mask:
    iterating os.environ meanwhile raised KeyError (or RuntimeError)."""
    stop = threading.Event()

    def churn():
        i = 0
        while not stop.is_set():
            os.environ["_TEST_CHURN_SESSION_ID"] = str(i)
            os.environ[f"_TEST_CHURN_{i % 50}"] = "x"
            os.environ.pop("_TEST_CHURN_SESSION_ID", None)
            os.environ.pop(f"_TEST_CHURN_{(i + 25) % 50}", None)
            i += 1

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        for _ in range(3000):
            mask_text("https://u:p@host")
            environ_snapshot()
    finally:
        stop.set()
        thread.join()
        for key in [k for k in os.environ if k.startswith("_TEST_CHURN")]:
            os.environ.pop(key, None)
