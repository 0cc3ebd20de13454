"""`python -m orchestrator translate` as a Ray Data job against a moto S3 server, a real local Ray
(the session's) and a real MLflow registry (sqlite): a few hundred tiny images of mixed sizes and
modes, some unreadable, translated S3 -> S3 by a registered champion.

One registration, one translation of the set shared by the tests that read its outputs; the rerun,
the killed worker and the memory check each run the job once more.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid

import numpy as np
import psutil
import pytest
from mlflow import MlflowClient
from PIL import Image

from conftest import moto_client, register_random_champion
from cyclegan.checkpoint import load_generator
from cyclegan.commands.runner import run_cli
from cyclegan.data import decode_image
from cyclegan.translate import translate_image
from orchestrator.commands import main
from orchestrator.tracking.translation import LAST_TRANSLATION_TAG, VERSION_TAG

MODES = ("RGB", "L", "RGBA", "P", "I;16")
UNREADABLE = {
    "broken/text.png": b"not an image at all",
    "broken/truncated.png": None,  # the first 40 bytes of a real PNG
    "broken/empty.jpg": b"",
}


def _image(rng: np.random.Generator, index: int) -> bytes:
    """A PNG of 8-40 px a side, in one of the modes training reads."""
    width, height = (int(v) for v in rng.integers(8, 41, 2))
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mode = MODES[index % len(MODES)]
    if mode == "RGB":
        img = Image.fromarray(pixels)
    elif mode == "L":
        img = Image.fromarray(pixels[:, :, 0])
    elif mode == "RGBA":
        img = Image.fromarray(np.dstack([pixels, pixels[:, :, :1]]))
    elif mode == "P":
        img = Image.fromarray(pixels).convert("P")
    else:
        img = Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 257)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(s3, bucket: str, prefix: str, count: int, seed: int) -> dict[str, bytes]:
    """`count` images (a third of them in a sub-folder) and the unreadable files under
    `prefix`; returns the readable ones by relative key."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(seed)
    images = {f"{'sub/' if i % 3 == 0 else ''}img{i:04d}.png": _image(rng, i) for i in range(count)}
    first = next(iter(images.values()))
    bodies = {**images, **{k: first[:40] if v is None else v for k, v in UNREADABLE.items()}}
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(lambda k: s3.put_object(Bucket=bucket, Key=prefix + k, Body=bodies[k]), bodies)
        )
    return images


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="module")
def setup(ray_session, s3_server, tmp_path_factory):
    """A registered champion (random tiny generators), a bucket with 200 images and 3 unreadable
    files, and the MLflow registry's URI; this process reaches the moto server (the session's Ray
    workers already do)."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in S3_ENV.items():
            env.setenv(key, value)
        env.setenv("AWS_ENDPOINT_URL_S3", s3_server)
        yield _setup(s3_server, tmp_path_factory)


def _setup(s3_server, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("batch-translate")
    uri, version = register_random_champion(root, "tiny")
    s3 = moto_client(s3_server)
    bucket = f"batch-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    images = _upload(s3, bucket, "photos/", 200, seed=0)
    return {
        "uri": uri,
        "version": version,
        "bucket": bucket,
        "s3": s3,
        "images": images,
        "net": load_generator(root / "latest_net_G_A.pth"),
    }


def _translate(setup, source: str, output: str, *extra: str) -> int:
    bucket = setup["bucket"]
    return run_cli(
        main,
        [
            "translate",
            "--model",
            "models:/cyclegan-tiny@champion",
            "--input",
            f"s3://{bucket}/{source}",
            "--output",
            f"s3://{bucket}/{output}",
            "--tracking-uri",
            setup["uri"],
            "--batch-size",
            "32",
            *extra,
        ],
    )


class PeakMemory:
    """Peak resident memory, sampled every 50 ms while the block runs: how far this process (the
    driver) rose above where it stood, and the largest peak of any process of the session's Ray
    (the raylet with its object store, the GCS, every worker). How many workers run is bounded by
    the cluster's CPUs, not by the input: what must stay flat as the input grows is each process's
    own peak."""

    def __init__(self):
        self.start = psutil.Process().memory_info().rss
        self.driver, self.largest, self._stop = self.start, 0, threading.Event()

    @property
    def driver_rise(self) -> int:
        return self.driver - self.start

    def _sample(self):
        me = psutil.Process()
        while not self._stop.wait(0.05):
            self.driver = max(self.driver, me.memory_info().rss)
            for proc in me.children(recursive=True):
                try:
                    self.largest = max(self.largest, proc.memory_info().rss)
                except psutil.Error:
                    pass

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def first_run(setup):
    with PeakMemory() as memory:
        code = _translate(setup, "photos/", "out/")
    return {"code": code, "memory": memory}


def _outputs(setup, prefix: str) -> dict[str, dict]:
    s3, bucket = setup["s3"], setup["bucket"]
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"][len(prefix) :]] = item
    return found


def _report(setup, prefix: str) -> dict:
    body = setup["s3"].get_object(Bucket=setup["bucket"], Key=f"{prefix}_translation.json")
    return json.loads(body["Body"].read())


def test_every_readable_image_is_translated_at_its_exact_size(setup, first_run):
    assert first_run["code"] == 0
    s3, bucket, net = setup["s3"], setup["bucket"], setup["net"]
    outputs = _outputs(setup, "out/")
    images = setup["images"]
    assert {k for k in outputs if not k.startswith("_translation")} == set(images)
    sizes = set()
    for key, data in images.items():
        source = decode_image(data, key, 3)
        expected = np.asarray(translate_image(net, source, 4), dtype=np.int16)
        obj = s3.get_object(Bucket=bucket, Key=f"out/{key}")
        got = np.asarray(Image.open(io.BytesIO(obj["Body"].read())), dtype=np.int16)
        assert got.shape[:2] == (source.height, source.width), key  # exact, never rounded
        assert np.abs(got - expected).max() <= 1, key
        assert obj["Metadata"]["cyclegan-model-version"] == setup["version"]
        sizes.add(source.size)
    assert len(sizes) > 100  # mixed sizes, most not a multiple of the generator's 4


def test_the_report_lists_the_unreadable_images_and_mlflow_records_the_run(setup, first_run):
    report = _report(setup, "out/")
    assert report["model"]["name"] == "cyclegan-tiny"
    assert report["model"]["version"] == setup["version"]
    assert report["counts"] == {
        "translated": 200,
        "already_there": 0,
        "failed": 3,
        "unreadable": 3,
        "missing": 0,
    }
    reasons = {f["input"]: f["reason"] for f in report["failures"]}
    assert set(reasons) == set(UNREADABLE)
    assert reasons["broken/text.png"] == "not a readable image file"
    assert report["complete"] and report["throughput"]["images_per_s"] > 0
    client = MlflowClient(setup["uri"])
    runs = client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id],  # the model's experiment
        f"tags.`{VERSION_TAG}` = '{setup['version']}'",
    )
    assert runs and runs[-1].data.metrics["translated"] == 200
    tag = client.get_model_version("cyclegan-tiny", setup["version"]).tags[LAST_TRANSLATION_TAG]
    assert "200 translated" in tag


def test_a_dry_run_counts_and_writes_nothing(setup, first_run, capsys):
    capsys.readouterr()
    assert _translate(setup, "photos/", "dry/", "--dry-run", "--workers", "1-3") == 0
    said = capsys.readouterr().out
    assert "203 image(s)" in said and "0 already translated" in said and "203 to translate" in said
    assert "would start 1 to 3 (autoscaled) translating worker(s) on CPU" in said, said
    assert not _outputs(setup, "dry/")


def test_a_second_run_translates_nothing_and_says_so(setup, first_run, capsys):
    capsys.readouterr()
    before = {k: v["ETag"] for k, v in _outputs(setup, "out/").items()}
    assert _translate(setup, "photos/", "out/") == 0
    said = capsys.readouterr().out
    assert "200 already translated" in said and "nothing to translate" in said, said
    after = _outputs(setup, "out/")
    assert all(after[k]["ETag"] == etag for k, etag in before.items() if k.endswith(".png"))
    assert _report(setup, "out/")["counts"]["already_there"] == 200


def test_a_worker_no_node_can_hold_is_refused_at_once(setup, first_run, capsys):
    """The session's Ray has no GPU and cannot add nodes: asking for one per worker is one
    message and exit 2, not a job waiting for ever."""
    from orchestrator.runtime import has_autoscaler

    deadline = time.monotonic() + 30
    while has_autoscaler() and time.monotonic() < deadline:  # the monitor reports every few seconds
        time.sleep(1)
    capsys.readouterr()
    assert _translate(setup, "photos/", "gpu-out/", "--gpus-per-worker", "1") == 2
    said = capsys.readouterr()
    assert "--gpus-per-worker 1: no node of this cluster has that many GPUs (the most: 0)" in (
        said.err + said.out
    )
    assert "Traceback" not in said.err
    assert not [k for k in _outputs(setup, "gpu-out/") if not k.startswith("_translation/")]


@pytest.fixture(scope="module")
def big_run(setup, ray_session):
    """Five times the images (1000), translated while the peak memory is sampled; once the job is
    under way (outputs written), the translating actor's process is killed."""
    from ray.util.state import list_actors

    images = _upload(setup["s3"], setup["bucket"], "many/", 1000, seed=1)
    result = {"images": images, "killed": None}

    def translate():
        with PeakMemory() as memory:
            result["code"] = _translate(setup, "many/", "many-out/")
        result["memory"] = memory

    job = threading.Thread(target=translate)
    job.start()
    deadline = time.monotonic() + 300
    while job.is_alive() and result["killed"] is None and time.monotonic() < deadline:
        if len(_outputs(setup, "many-out/")) >= 50:
            actors = list_actors(  # this session's Ray: others may run on the machine
                address=ray_session,
                filters=[("state", "=", "ALIVE")],
                raise_on_missing_output=False,
                detail=True,
            )
            pids = [a.pid for a in actors if "Translator" in (a.class_name or "")]
            if pids:
                psutil.Process(pids[0]).kill()
                result["killed"] = pids[0]
        time.sleep(0.2)
    job.join(300)
    return result


def test_a_killed_worker_leaves_a_complete_output(setup, big_run):
    """Ray Data starts another actor and does the killed one's blocks again: every output is
    there, each counted once."""
    assert big_run["killed"] is not None, "the job ended before its worker could be killed"
    assert big_run["code"] == 0
    outputs = _outputs(setup, "many-out/")
    assert {k for k in outputs if not k.startswith("_translation")} == set(big_run["images"])
    assert _report(setup, "many-out/")["counts"]["translated"] == 1000


def test_five_times_the_images_need_no_more_memory(first_run, big_run):
    """Streaming: the driver and each of Ray's processes (the object store's raylet included) hold
    the blocks in flight, never the whole input."""
    small, big = first_run["memory"], big_run["memory"]
    driver = (big.driver_rise - small.driver_rise) / 2**20
    largest = (big.largest - small.largest) / 2**20
    assert driver < 50, f"the driver's peak memory grew by {driver:.0f} MiB for 5x the images"
    assert largest < 100, f"a Ray process's peak memory grew by {largest:.0f} MiB for 5x the images"
