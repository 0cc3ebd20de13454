"""S3's routine faults against a real S3 API (moto over HTTP) behind the fault-injecting proxy
(tests/s3_faults.py): dataset downloads, the storage check, checkpoint and best-epoch uploads
and downloads all ride out throttling, resets and short bodies; and every documented storage form
works (query string included)."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import pytest

from conftest import moto_client
from cyclegan.sources import fetch_dataset
from orchestrator.storage.best import BestKeeper, Ranking, read_best
from orchestrator.storage.checkpoints import StoredCheckpoints
from orchestrator.storage.location import (
    RetryingS3FileSystem,
    parse_storage,
    storage_child,
    validate_storage,
)

BUCKET = "cyclegan-faults-tests"
FAULTS = {"throttle": 0.25, "reset": 0.05, "short": 0.03, "delay": 0.05}


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def client(s3_server):
    c = moto_client(s3_server)
    c.create_bucket(Bucket=BUCKET)
    return c


@pytest.fixture
def faulty(s3_faults, s3_env, monkeypatch):
    """The proxy as the S3 endpoint, with the issue's fault rates; retries quick (a short
    budget keeps a broken retry from hiding behind minutes of waiting)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_faults.url)
    monkeypatch.setenv("CYCLEGAN_S3_RETRY_S", "60")
    s3_faults.set_rates(**FAULTS)
    s3_faults.injected.clear()
    yield s3_faults
    s3_faults.set_rates(throttle=0, reset=0, short=0, delay=0)


def test_dataset_download_rides_out_faults_and_keeps_no_short_file(
    faulty, client, tiny_dataset, tmp_path, caplog
):
    for path in tiny_dataset.rglob("*"):
        if path.is_file():
            key = f"data/tiny/{path.relative_to(tiny_dataset).as_posix()}"
            client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        for rel, data in tree(tiny_dataset).items():
            zf.writestr(f"tiny/{rel}", data)
    client.put_object(Bucket=BUCKET, Key="data/tiny.zip", Body=zipped.getvalue())
    with caplog.at_level(logging.WARNING, logger="cyclegan.sources.s3_retry"):
        prefix = fetch_dataset(f"s3://{BUCKET}/data/tiny", str(tmp_path / "cache"))
        archive = fetch_dataset(f"s3://{BUCKET}/data/tiny.zip", str(tmp_path / "cache"))
    assert tree(prefix.path) == tree(tiny_dataset)  # byte-identical, no file cut short
    assert tree(archive.path) == tree(tiny_dataset)
    assert faulty.injected["throttle"] and faulty.injected["reset"] and faulty.injected["short"]
    # once per kind, not per attempt
    kinds = [r.getMessage().split(" while ")[0] for r in caplog.records]
    assert len(kinds) == len(set(kinds)), kinds


def test_storage_check_retries_throttling(faulty, client):
    faulty.set_rates(throttle=0.5, reset=0, short=0, delay=0)  # two 503s in a row are common
    target = validate_storage(f"s3://{BUCKET}/runs")
    assert faulty.injected["throttle"] >= 2
    assert isinstance(target.filesystem, RetryingS3FileSystem)


def test_checkpoints_and_best_survive_faults(faulty, client, tmp_path):
    storage = parse_storage(f"s3://{BUCKET}/runs/exp/trials")
    staged = tmp_path / "staged"
    staged.mkdir()
    payload = {name: bytes(range(256)) * (40 + i) for i, name in enumerate(("a.pt", "b.pth"))}
    for name, data in payload.items():
        (staged / name).write_bytes(data)
    (staged / "metrics.json").write_text("{}")
    checkpoints = StoredCheckpoints(storage, "task-t1", keep=2)
    for epoch in (1, 2, 3):
        checkpoints.save(staged, f"checkpoint_epoch_{epoch:04d}")
    with checkpoints.newest() as (folder, uri):
        assert uri.endswith("checkpoint_epoch_0003")
        assert {n: (folder / n).read_bytes() for n in payload} == payload
    out = tmp_path / "out"
    out.mkdir()
    (out / "latest_net_G_A.pth").write_bytes(b"g" * 5000)
    keeper = BestKeeper(Ranking("fid", "min"), storage, "task-t1")
    for epoch, value in ((1, 9.0), (2, 5.0), (3, 7.0)):
        keeper.update(epoch, {"fid": value}, out)
    best = read_best(storage, "task-t1")
    assert (best.epoch, best.value) == (2, 5.0)
    assert sum(faulty.injected.values()) >= 5


def test_retrying_filesystem_keeps_its_retries_when_pickled():
    import pickle

    fs = parse_storage("s3://b/p?endpoint_override=127.0.0.1:9&scheme=http").filesystem
    again = pickle.loads(pickle.dumps(fs))
    assert isinstance(again, RetryingS3FileSystem) and again.attempts == fs.attempts >= 10


# Every storage form docs/ray-train.md, docs/manifest.md and orchestrator/storage/location.py give.
FORMS = {
    "endpoint from $AWS_ENDPOINT_URL_S3": "s3://{bucket}/forms/env",
    "bucket only": "s3://{bucket}",
    "endpoint_override=HOST:PORT&scheme=http": (
        "s3://{bucket}/forms/query?endpoint_override={hostport}&scheme=http"
    ),
    "endpoint_override=http://HOST:PORT": "s3://{bucket}/forms/url?endpoint_override={endpoint}",
    "with region": (
        "s3://{bucket}/forms/region?endpoint_override={hostport}&scheme=http&region=us-east-1"
    ),
    "user info (ignored)": "s3://KEY:SECRET@{bucket}/forms/userinfo",
}


@pytest.mark.parametrize("form", FORMS)
def test_each_documented_s3_storage_form_works(form, s3_env, s3_server, client, tmp_path):
    uri = FORMS[form].format(
        bucket=BUCKET, endpoint=s3_server, hostport=s3_server.removeprefix("http://")
    )
    validate_storage(uri)
    trials = parse_storage(storage_child(uri, "exp", "trials"))  # what the sweep derives
    staged = tmp_path / "c"
    staged.mkdir()
    (staged / "metrics.json").write_text('{"epoch": 1}')
    saved = StoredCheckpoints(trials, "task-t1", keep=1).save(staged, "checkpoint_epoch_0001")
    assert "?" not in saved and saved.endswith("/exp/trials/task-t1/checkpoint_epoch_0001")
    key = f"{trials.path.split('/', 1)[1]}/task-t1/checkpoint_epoch_0001/metrics.json".lstrip("/")
    assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b'{"epoch": 1}'


@pytest.mark.parametrize("form", ["{tmp}/runs", "file://{tmp}/runs", "relative"])
def test_each_documented_folder_storage_form_works(form, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = "runs" if form == "relative" else form.format(tmp=tmp_path)
    validate_storage(uri)
    trials = parse_storage(storage_child(uri, "exp", "trials"))
    staged = tmp_path / "c"
    staged.mkdir()
    (staged / "metrics.json").write_text("{}")
    StoredCheckpoints(trials, "task-t1", keep=1).save(staged, "checkpoint_epoch_0001")
    assert (tmp_path / "runs/exp/trials/task-t1/checkpoint_epoch_0001/metrics.json").is_file()
