"""Datasets from S3 against a real S3 API (moto in server mode over HTTP): prefixes and zips,
the cache (no second download, only changed objects again, one download for many processes,
nothing half-written published), refusals and error messages, and training from s3://."""

from __future__ import annotations

import glob
import io
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from PIL import Image

from conftest import free_port
from cyclegan.data import DatasetError
from cyclegan.sources import fetch_dataset
from cyclegan.sources.synthetic import generate

BUCKET = "cyclegan-sources-tests"


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def zipped(source: Path, top: str, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for rel, data in tree(source).items():
            zf.writestr(f"{top}/{rel}", data)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


def png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def client(s3_server):
    """A client of our own (explicit dummy credentials), for setting up objects."""
    c = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )
    c.create_bucket(Bucket=BUCKET)
    return c


def upload(client, source: Path, prefix: str) -> list[str]:
    keys = []
    for rel, data in tree(source).items():
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{rel}", Body=data)
        keys.append(f"{prefix}/{rel}")
    return keys


@pytest.fixture(scope="module")
def uploaded(client, tiny_dataset) -> dict:
    """The tiny dataset as a prefix (tiny/...) and as the reference's kind of zip (zips/tiny.zip:
    tiny/trainA/...)."""
    keys = upload(client, tiny_dataset, "tiny")
    client.put_object(Bucket=BUCKET, Key="zips/tiny.zip", Body=zipped(tiny_dataset, "tiny"))
    return {"prefix": f"s3://{BUCKET}/tiny", "zip": f"s3://{BUCKET}/zips/tiny.zip", "keys": keys}


def test_prefix_is_mirrored_file_for_file_and_not_downloaded_again(
    uploaded, s3_env, tiny_dataset, tmp_path
):
    cache = str(tmp_path / "cache")
    first = fetch_dataset(uploaded["prefix"], cache)
    assert (
        first.built
        and sorted(first.downloaded) == sorted(uploaded["keys"])
        and first.bytes_downloaded > 0
    )
    assert tree(first.path) == tree(tiny_dataset)
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in first.path.rglob("*.png")}
    second = fetch_dataset(
        uploaded["prefix"] + "/", cache
    )  # same dataset, however the prefix is spelled
    assert (
        not second.built
        and second.downloaded == []
        and second.bytes_downloaded == 0
        and second.path == first.path
    )
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in first.path.rglob("*.png")} == stamps
    assert not glob.glob(f"{cache}/**/.tmp-*", recursive=True)


def test_only_a_changed_object_is_fetched_again(client, s3_env, tiny_dataset, tmp_path):
    keys = upload(client, tiny_dataset, "changing")
    cache = str(tmp_path / "cache")
    old = fetch_dataset(f"s3://{BUCKET}/changing", cache)
    assert sorted(old.downloaded) == sorted(keys)
    client.put_object(Bucket=BUCKET, Key="changing/trainB/00003.png", Body=png((0, 255, 0)))
    new = fetch_dataset(f"s3://{BUCKET}/changing", cache)
    assert (
        new.built
        and new.downloaded == ["changing/trainB/00003.png"]
        and new.bytes_downloaded == len(png((0, 255, 0)))
    )
    assert sorted(new.reused) == sorted(set(keys) - {"changing/trainB/00003.png"})
    assert (new.path / "trainB/00003.png").read_bytes() == png((0, 255, 0))
    expected = tree(tiny_dataset) | {"trainB/00003.png": png((0, 255, 0))}
    assert tree(new.path) == expected
    # Unchanged files are the very same files on disk (hard links), not fresh copies of new bytes.
    assert (new.path / "trainA/00000.png").stat().st_ino == (
        old.path / "trainA/00000.png"
    ).stat().st_ino
    # The older snapshot is untouched: a run that resolved it earlier keeps reading a consistent
    # dataset.
    assert tree(old.path) == tree(tiny_dataset)


def test_zip_resolves_to_its_top_folder_and_is_downloaded_once(
    uploaded, s3_env, tiny_dataset, tmp_path
):
    cache = str(tmp_path / "cache")
    first = fetch_dataset(uploaded["zip"], cache)
    assert first.built and first.downloaded == ["zips/tiny.zip"] and first.path.name == "tiny"
    assert tree(first.path) == tree(tiny_dataset)
    assert not list(
        first.snapshot.rglob("*.zip")
    )  # the archive itself is not kept beside its contents
    second = fetch_dataset(uploaded["zip"], cache)
    assert not second.built and second.downloaded == [] and second.path == first.path


def _resolve_in_child(url: str, cache: str, barrier, queue) -> None:
    barrier.wait()  # all processes start resolving at the same moment
    try:
        result = fetch_dataset(url, cache, show_progress=False)
        # Read every file right away: a partial read would show up as a difference from the source.
        queue.put((os.getpid(), result.downloaded, tree(result.path), str(result.path)))
    except BaseException as err:
        queue.put((os.getpid(), None, repr(err), ""))


def test_concurrent_processes_download_once_and_never_read_partial_files(
    uploaded, s3_env, tiny_dataset, tmp_path
):
    n = 4
    # Fresh interpreters: a fork of this process (Ray's, moto's and tqdm's threads) can inherit a
    # lock that one of those threads holds at that moment, and then never get it.
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(
            target=_resolve_in_child,
            args=(uploaded["prefix"], str(tmp_path / "cache"), barrier, queue),
        )
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in range(n)]
    for p in procs:
        p.join(timeout=30)
    assert len({pid for pid, *_ in results}) == n
    assert all(downloaded is not None for _, downloaded, _, _ in results), results
    downloads = sorted(len(downloaded) for _, downloaded, _, _ in results)
    assert downloads == [0] * (n - 1) + [
        len(uploaded["keys"])
    ]  # one process downloaded, the others waited
    assert all(files == tree(tiny_dataset) for _, _, files, _ in results)
    assert len({path for *_, path in results}) == 1


def _fetch_forever(url: str, cache: str) -> None:
    fetch_dataset(url, cache, show_progress=False)


def test_a_killed_download_leaves_nothing_that_looks_complete(client, s3_env, tmp_path):
    source = generate("colorshift", tmp_path / "src", 2, 0, 8)
    (source / "trainA" / "big.bin").write_bytes(
        os.urandom(24 << 20)
    )  # long enough to be caught mid-download
    keys = upload(client, source, "crash")
    cache = tmp_path / "cache"
    # Spawned, not forked: a forked child shares tqdm's multiprocessing lock with this process, and
    # killing it while it holds that lock would hang every later progress bar here.
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_fetch_forever, args=(f"s3://{BUCKET}/crash", str(cache)))
    proc.start()
    deadline = time.monotonic() + 60
    while not glob.glob(f"{cache}/s3/*/snapshots/.tmp-*") and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert glob.glob(f"{cache}/s3/*/snapshots/.tmp-*"), (
        "the download finished before it could be interrupted"
    )
    assert not glob.glob(f"{cache}/s3/*/snapshots/[!.]*")  # no snapshot published
    result = fetch_dataset(f"s3://{BUCKET}/crash", str(cache))
    assert (
        result.built
        and sorted(result.downloaded) == sorted(keys)
        and tree(result.path) == tree(source)
    )
    assert not glob.glob(f"{cache}/s3/*/snapshots/.tmp-*")  # the leftover was cleaned up


def test_members_and_keys_outside_the_cache_are_refused(client, s3_env, tiny_dataset, tmp_path):
    client.put_object(
        Bucket=BUCKET,
        Key="zips/evil.zip",
        Body=zipped(tiny_dataset, "tiny", {"tiny/../../../evil.png": b"x"}),
    )
    with pytest.raises(DatasetError) as err:
        fetch_dataset(f"s3://{BUCKET}/zips/evil.zip", str(tmp_path / "cache"))
    assert "member 'tiny/../../../evil.png' would land outside the cache directory" in str(
        err.value
    )
    upload(client, generate("colorshift", tmp_path / "src", 2, 0, 8), "sneaky")
    client.put_object(Bucket=BUCKET, Key="sneaky/../../evil.png", Body=b"x")
    with pytest.raises(DatasetError) as err:
        fetch_dataset(f"s3://{BUCKET}/sneaky", str(tmp_path / "cache"))
    assert "key '../../evil.png' would land outside the cache directory" in str(err.value)
    assert not list(tmp_path.rglob("evil.png"))
    assert not glob.glob(f"{tmp_path}/cache/s3/*/snapshots/*")


@pytest.fixture
def bad_objects(client, tiny_dataset):
    client.put_object(Bucket=BUCKET, Key="zips/corrupt.zip", Body=b"PK\x03\x04 not really a zip")
    client.put_object(
        Bucket=BUCKET, Key="zips/flat.zip", Body=zipped(tiny_dataset / "trainA", "images")
    )
    client.put_object(Bucket=BUCKET, Key="flat/images/1.png", Body=png((1, 2, 3)))
    client.put_object(Bucket=BUCKET, Key="clash/trainA", Body=b"x")
    client.put_object(Bucket=BUCKET, Key="clash/trainA/sub/1.png", Body=png((1, 2, 3)))


@pytest.mark.parametrize(
    "ref,message",
    [
        (
            "s3://no-such-bucket-here/tiny",
            "s3://no-such-bucket-here/tiny: bucket 'no-such-bucket-here' not found at http://127.0.0.1:",
        ),
        (
            f"s3://{BUCKET}/no/such/prefix",
            f"s3://{BUCKET}/no/such/prefix: no objects under this prefix",
        ),
        (f"s3://{BUCKET}/zips/missing.zip", f"s3://{BUCKET}/zips/missing.zip: object not found"),
        (
            f"s3://{BUCKET}/zips/corrupt.zip",
            f"s3://{BUCKET}/zips/corrupt.zip: archive is corrupt or not a .zip file",
        ),
        (
            f"s3://{BUCKET}/zips/flat.zip",
            f"s3://{BUCKET}/zips/flat.zip: no trainA/ or trainB/ anywhere in it (found: images/)",
        ),
        (
            f"s3://{BUCKET}/flat",
            f"s3://{BUCKET}/flat: no trainA/ or trainB/ anywhere in it (found: images/)",
        ),
        (
            f"s3://{BUCKET}/clash",
            f"s3://{BUCKET}/clash/trainA: this key is both a file and a folder",
        ),
    ],
)
def test_error_messages(bad_objects, s3_env, tmp_path, ref, message):
    with pytest.raises(DatasetError) as err:
        fetch_dataset(ref, str(tmp_path / "cache"))
    assert message in str(err.value)


def test_access_denied(uploaded, s3_env, s3_server, tmp_path):
    def auth_after(count: str) -> None:  # moto's switch for checking credentials ("inf": never)
        urllib.request.urlopen(
            urllib.request.Request(
                f"{s3_server}/moto-api/reset-auth",
                data=count.encode(),
                method="POST",
                headers={"Content-Type": "text/plain"},
            )
        )

    auth_after("0")
    try:
        with pytest.raises(DatasetError) as err:
            fetch_dataset(uploaded["prefix"], str(tmp_path / "cache"))
    finally:
        auth_after("inf")
    assert (
        f"{uploaded['prefix']}: access denied (InvalidAccessKeyId) at {s3_server}; check the "
        f"credentials" in str(err.value)
    )
    assert "testing" not in str(err.value)  # never a credential in a message


def test_missing_credentials(uploaded, s3_env, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(
        DatasetError, match=f"{uploaded['prefix']}: no usable AWS credentials found"
    ):
        fetch_dataset(uploaded["prefix"], str(tmp_path / "cache"))


def test_unreachable_endpoint_is_named_within_seconds_despite_the_long_retry_budget(
    s3_env, tmp_path
):
    endpoint = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(DatasetError) as err:
        fetch_dataset(f"s3://{BUCKET}/tiny", str(tmp_path / "cache"), endpoint_url=endpoint)
    assert f"s3://{BUCKET}/tiny: cannot reach the S3 endpoint {endpoint}" in str(err.value)
    assert time.monotonic() - start < 15  # botocore alone would retry for $CYCLEGAN_S3_RETRY_S


def test_cli_fetch_and_inspect_an_s3_prefix(uploaded, s3_env, tmp_path, capsys):
    from cyclegan.commands import main

    assert (
        main(
            [
                "data",
                "fetch",
                uploaded["prefix"],
                "--cache_dir",
                str(tmp_path / "cache"),
                "--no_progress",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert (
        Path(captured.out.strip()).is_relative_to(tmp_path / "cache")
        and f"downloaded {len(uploaded['keys'])} file(s)" in captured.err
    )
    assert (
        main(
            [
                "data",
                "inspect",
                uploaded["prefix"],
                "--cache_dir",
                str(tmp_path / "cache"),
                "--no_progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert any(line.split()[:3] == ["trainB/", "12", "0"] for line in out.splitlines())


def test_validate_checks_s3_data_at_the_endpoint_the_task_trains_from(
    uploaded, s3_env, s3_server, monkeypatch, tmp_path, capsys
):
    """The task's s3_endpoint_url (what its trials fetch from) wins over the environment's endpoint,
    as in training."""
    from cyclegan.commands.runner import run_cli
    from orchestrator.commands import main

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # a refused connection is retried, briefly
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", dead)
    manifest = tmp_path / "endpoints.yaml"
    task = (
        f"{{name: tiny, data: '{uploaded['prefix']}', train: {{s3_endpoint_url: '{s3_server}'}}}}"
    )
    manifest.write_text(f"name: endpoints\ntasks:\n  - {task}\n")
    assert run_cli(main, ["validate", str(manifest)]) == 0, capsys.readouterr().err
    assert "every dataset has trainA/ and trainB/" in capsys.readouterr().out
    # Without the option the environment's endpoint is the one: validate looks there, and says so.
    manifest.write_text(
        f"name: endpoints\ntasks:\n  - {{name: tiny, data: '{uploaded['prefix']}'}}\n"
    )
    assert run_cli(main, ["validate", str(manifest)]) == 2
    assert (
        f"tasks[0].data (tiny): {uploaded['prefix']}: cannot reach the S3 endpoint {dead}"
        in capsys.readouterr().err
    )


@pytest.mark.slow
def test_train_from_an_s3_reference(uploaded, s3_env, tmp_path):
    env = {
        **os.environ,
        **s3_env,
        "CYCLEGAN_CACHE_DIR": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "2",
    }
    cmd = [
        sys.executable,
        "-m",
        "cyclegan",
        "train",
        "--dataroot",
        uploaded["prefix"],
        "--name",
        "from_s3",
        "--checkpoints_dir",
        str(tmp_path / "ckpt"),
        "--netG",
        "resnet_2blocks",
        "--ngf",
        "8",
        "--ndf",
        "8",
        "--load_size",
        "32",
        "--crop_size",
        "32",
        "--n_epochs",
        "1",
        "--n_epochs_decay",
        "0",
        "--num_threads",
        "0",
        "--device",
        "cpu",
        "--n_samples",
        "2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ckpt" / "from_s3" / "latest_net_G_A.pth").is_file()
    mirrored = glob.glob(f"{tmp_path}/cache/s3/*/snapshots/*/data/trainA/*.png")
    assert len(mirrored) == 12
