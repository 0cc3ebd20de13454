"""`orchestrator translate --input s3://bucket/prefix` lists its images through the S3 client of
cyclegan.sources (moto in server mode): keys that would climb out of the prefix are refused before
anything is read or written, relative names are kept, the endpoint option wins over the
environment."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from cyclegan.commands.runner import run_cli
from orchestrator.commands import main

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde\x00\x00\x00\x0cIDATx"
    b"\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82"
)


def _bucket(s3_env, keys: list[str]) -> str:
    client = boto3.client(
        "s3",
        endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )
    bucket = f"translate-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=PNG)
    listed = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert sorted(listed) == sorted(keys), (
        "the S3 server changed the keys: the test would prove nothing"
    )
    return bucket


# (key under s3://bucket/in/, why it is refused)
CLIMBING = [
    ("in/../{name}", "'..' in the path"),
    ("in/sub/../../../../{name}", "'..' in the path"),
    ("in//tmp/{name}", "absolute path"),
    ("in/..\\..\\{name}", "'..' in the path"),
]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """The dataset cache: the batch job never fills it."""
    monkeypatch.setenv("CYCLEGAN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("pattern,reason", CLIMBING)
def test_keys_climbing_out_of_the_prefix_are_refused(
    s3_env, tmp_path, capsys, cache, pattern, reason
):
    name = f"escaped-{uuid.uuid4().hex[:8]}.png"
    bad = pattern.format(name=name)
    bucket = _bucket(s3_env, ["in/good.png", bad])
    out = tmp_path / "out"
    code = run_cli(
        main,
        [
            "translate",
            "--model",
            str(tmp_path / "no-model"),
            "--input",
            f"s3://{bucket}/in",
            "--output",
            str(out),
        ],
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert (
        err.startswith(f"error: --input s3://{bucket}/")
        and "would land outside" in err
        and reason in err
    ), err
    assert "Traceback" not in err
    assert repr(bad[len("in/") :]) in err  # names the key
    assert not out.exists()
    assert not list(tmp_path.rglob(name)) and not list(
        cache.rglob("good.png")
    )  # refused before anything was written
    for folder in (
        Path(tempfile.gettempdir()),
        Path("/tmp"),
        Path("/"),
    ):  # where the oldest code wrote them
        assert not (folder / name).exists()


def test_the_prefix_is_listed_with_its_relative_names(s3_env, cache):
    """The batch job reads S3 in place (no dataset cache): the images under the prefix, by their
    names relative to it, nothing else."""
    from orchestrator.batch.plan import input_keys
    from orchestrator.batch.stores import open_store

    bucket = _bucket(s3_env, ["in/a.png", "in/sub/b.PNG", "in/notes.txt", "other/c.png"])
    store = open_store(f"s3://{bucket}/in", None, "--input", output=False)
    assert input_keys(store) == {"a.png": len(PNG), "sub/b.PNG": len(PNG)}
    assert store.read("sub/b.PNG") == PNG
    assert not cache.exists()


def test_a_prefix_without_images_is_named(s3_env, capsys):
    bucket = _bucket(s3_env, ["in/notes.txt"])
    code = run_cli(
        main, ["translate", "--model", "m", "--input", f"s3://{bucket}/in", "--output", "o"]
    )
    assert code == 2 and capsys.readouterr().err.startswith(
        f"error: --input s3://{bucket}/in: no images here (looked for .jpg"
    )


def test_translate_takes_the_s3_endpoint_option(s3_env, s3_server, tmp_path, monkeypatch, capsys):
    """--s3-endpoint-url wins over the environment, as --s3_endpoint_url does for datasets."""
    bucket = _bucket(s3_env, ["in/../x.png"])
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    code = run_cli(
        main,
        [
            "translate",
            "--model",
            "m",
            "--input",
            f"s3://{bucket}/in",
            "--output",
            str(tmp_path / "o"),
            "--s3-endpoint-url",
            s3_server,
        ],
    )
    assert code == 2 and "would land outside the cache directory" in capsys.readouterr().err


def test_an_input_url_goes_through_the_dataset_schemes(capsys):
    """Any URL is a dataset reference (a scheme cyclegan.sources does not know is named), a plain
    path is read in place."""
    code = run_cli(
        main, ["translate", "--model", "m", "--input", "gs://bucket/photos", "--output", "o"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(
        "error: --input gs://bucket/photos: unsupported scheme gs://"
    ), err
