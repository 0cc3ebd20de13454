"""Credentials never shown or stored: masking (table-driven), the race with MLflow's telemetry
thread, the Ray runtime env, the stored training config, and S3 endpoints in messages."""

from __future__ import annotations

import os
import threading

import pytest

from cyclegan.urls import mask_userinfo
from orchestrator.redact import environ_snapshot, mask_text

SECRET = "s3cr3tVALUE"

# (text, what must be gone, what must stay)
MASKED = [
    (
        "https://alice:s3cr3tVALUE@mlflow.example.com/path",
        SECRET,
        "https://alice:***@mlflow.example.com/path",
    ),
    ("s3://AKIAABCDEFGHIJKLMNOP:s3cr3tVALUE@bucket/prefix", SECRET, "@bucket/prefix"),
    ("https://s3cr3tVALUE@github.com/org/repo.git", SECRET, "https://***@github.com/org/repo.git"),
    ("http://user:pa ss s3cr3tVALUE@minio:9000/x", SECRET, "http://user:***@minio:9000/x"),
    ("http://user:p@ss@s3cr3tVALUE@minio:9000", SECRET, "http://user:***@minio:9000"),
    (
        "postgresql://me:s3cr3tVALUE@db:5432/mlflow and http://host/x",
        SECRET,
        "@db:5432/mlflow and http://host/x",
    ),
    (
        "{'aws_secret_access_key': 's3cr3tVALUE', 'region': 'us-east-1'}",
        SECRET,
        "'region': 'us-east-1'",
    ),
    (
        '{"password": "with spaces s3cr3tVALUE", "user": "bob"}',
        SECRET,
        '"password": "***", "user": "bob"',
    ),
    ('{"token":"s3cr3tVALUE"}', SECRET, '{"token":"***"}'),
    ("Authorization: Bearer s3cr3tVALUE.more", SECRET, "Authorization: Bearer ***"),
    ("headers={'Authorization': 'Basic s3cr3tVALUE=='}", SECRET, "'Authorization': '***'"),
    ("sent Bearer s3cr3tVALUE to the server", SECRET, "Bearer ***"),
    (
        "https://acct.blob.core.windows.net/c/f?sv=2020&sig=s3cr3tVALUE&se=2030",
        SECRET,
        "sv=2020&sig=***&se=2030",
    ),
    ("odbc: Server=x;Uid=u;Pwd=s3cr3tVALUE;", SECRET, "Pwd=***;"),
    ("https://h/x?token=s3cr3tVALUE&page=2", SECRET, "token=***&page=2"),
    (
        "https://h/x?X-Amz-Signature=s3cr3tVALUE&X-Amz-Credential=AKIA",
        SECRET,
        "X-Amz-Signature=***",
    ),
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


def test_runtime_env_forwards_settings_but_no_secret():
    from orchestrator.runtime import worker_env

    environ = {
        "AWS_ACCESS_KEY_ID": "AKIAABCDEFGHIJKLMNOP",
        "AWS_SECRET_ACCESS_KEY": "canary-1",
        "AWS_SESSION_TOKEN": "canary-2",
        "MLFLOW_TRACKING_PASSWORD": "canary-3",
        "MLFLOW_TRACKING_TOKEN": "canary-4",
        "MLFLOW_TRACKING_URI": "https://bob:canary-5@mlflow:5000",
        "CYCLEGAN_API_KEY": "canary-6",
        "AWS_ENDPOINT_URL_S3": "http://minio:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "MLFLOW_S3_ENDPOINT_URL": "http://minio:9000",
        "CYCLEGAN_CACHE_DIR": "/mnt/cache",
        "CYCLEGAN_S3_ADDRESSING_STYLE": "path",
        "HOME": "/root",
        "PATH": "/bin",
    }
    env = worker_env(environ)
    assert not any("canary" in v or "AKIA" in v for v in env.values()), env
    assert env == {
        "AWS_ENDPOINT_URL_S3": "http://minio:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "MLFLOW_S3_ENDPOINT_URL": "http://minio:9000",
        "CYCLEGAN_CACHE_DIR": "/mnt/cache",
        "CYCLEGAN_S3_ADDRESSING_STYLE": "path",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    assert (
        worker_env({"MLFLOW_DISABLE_TELEMETRY": "false"})["MLFLOW_DISABLE_TELEMETRY"] == "false"
    )  # the user's choice wins


# -- references printed by the CLI: masked ---------------------------------------------------------
CANARY = "canaryPW-7f3a"
LEAKY_MANIFEST = f"""\
name: leaky
storage: "s3://AKIAABCDEFGHIJKLMNOP:{CANARY}@runs-bucket/sweeps"
defaults:
  train: {{netG: resnet_2blocks, ngf: 8, ndf: 8, load_size: 32, crop_size: 32, n_epochs: 1, n_epochs_decay: 0,
          s3_endpoint_url: "http://minio-user:{CANARY}@minio:9000"}}
tasks:
  - {{name: t, data: "synthetic://colorshift?size=32&n_train=4&n_test=1&seed=0"}}
"""  # noqa: E501 (test data as the user writes it)


def test_dry_run_prints_storage_and_options_masked(tmp_path, capsys):
    from cyclegan.commands.runner import run_cli
    from orchestrator.commands import main

    manifest = tmp_path / "leaky.yaml"
    manifest.write_text(LEAKY_MANIFEST)
    assert run_cli(main, ["run", str(manifest), "--dry-run", "--offline"]) == 0
    out = capsys.readouterr()
    assert "storage: s3://" in out.out and "@runs-bucket/sweeps" in out.out
    assert CANARY not in out.out + out.err and "AKIAABCDEFGHIJKLMNOP" not in out.out + out.err


def test_validate_errors_quote_data_references_masked(tmp_path, capsys):
    from cyclegan.commands.runner import run_cli
    from orchestrator.commands import main

    manifest = tmp_path / "leaky.yaml"
    manifest.write_text(
        LEAKY_MANIFEST.replace(
            '"synthetic://colorshift?size=32&n_train=4&n_test=1&seed=0"',
            f'"ftp://bob:{CANARY}@files.example.com/horse2zebra"',
        )
    )
    assert run_cli(main, ["validate", str(manifest)]) == 2
    err = capsys.readouterr().err
    # The field path names the value; the message never repeats it raw.
    assert "tasks[0].data (line" in err and "unsupported scheme ftp://" in err, err
    assert CANARY not in err


def test_s3_errors_show_the_endpoint_without_its_user_info(monkeypatch):
    from conftest import free_port
    from cyclegan.errors import DatasetError
    from cyclegan.sources import s3

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    client = s3.make_client(f"http://minio-user:{CANARY}@127.0.0.1:{free_port()}")
    with pytest.raises(DatasetError) as caught:
        s3.list_objects(client, "s3://bucket/prefix")
    assert "cannot reach the S3 endpoint http://minio-user:***@127.0.0.1:" in str(caught.value)
    assert CANARY not in str(caught.value)


def test_storage_handed_to_ray_keeps_no_user_info():
    from orchestrator.storage.location import without_userinfo

    assert (
        without_userinfo(f"s3://KEY:{CANARY}@bucket/p?endpoint_override=h:9000")
        == "s3://bucket/p?endpoint_override=h:9000"
    )
    assert without_userinfo("s3://bucket/p") == "s3://bucket/p"


def test_stored_config_masks_endpoint_credentials_and_resume_still_works(tiny_dataset, tmp_path):
    """config.json and latest_state.pt keep no s3_endpoint_url password; a resumed run (which takes
    its options from its caller) continues from the stored state."""
    import torch

    from conftest import tiny_config
    from cyclegan.trainer import Trainer

    endpoint = f"http://minio-user:{CANARY}@minio:9000"
    cfg = tiny_config(
        tiny_dataset,
        tmp_path,
        max_dataset_size=2,
        n_samples=0,
        n_epochs_decay=0,
        s3_endpoint_url=endpoint,
    )
    Trainer(cfg, show_progress=False).fit()
    run = tmp_path / "tiny"
    for path in (run / "config.json", run / "latest_state.pt"):
        assert CANARY.encode() not in path.read_bytes(), path
    state = torch.load(run / "latest_state.pt", weights_only=True)
    assert state["config"]["s3_endpoint_url"] == "http://minio-user:***@minio:9000"
    resumed = Trainer(cfg.replace(continue_train=True, n_epochs_decay=1), show_progress=False)
    assert resumed.start_epoch == 2
    assert resumed.cfg.s3_endpoint_url == endpoint
    resumed.fit()
    assert CANARY.encode() not in (run / "latest_state.pt").read_bytes()
