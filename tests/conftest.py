"""Shared fixtures. Servers (moto, MLflow, Ray) are started by the tests that need them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cyclegan.config import TrainConfig
from cyclegan.synthetic import generate

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small colorshift pair: 12 train and 4 test images per domain, 32x32."""
    return generate("colorshift", tmp_path_factory.mktemp("tiny") / "colorshift", n_train=12, n_test=4, size=32, seed=0)


def tiny_config(dataroot: Path, out: Path, **overrides) -> TrainConfig:
    """A CycleGAN small enough to train in seconds on two CPU cores."""
    values = dict(dataroot=str(dataroot), checkpoints_dir=str(out), name="tiny", netG="resnet_2blocks", ngf=8, ndf=8,
                  load_size=32, crop_size=32, n_epochs=1, n_epochs_decay=1, num_threads=0, device="cpu",
                  print_freq=5, n_samples=2, seed=0)
    values.update(overrides)
    return TrainConfig(**values).validate()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API: moto in server mode on a free 127.0.0.1 port. Yields its endpoint URL.

    Credentials are dummies; pass them explicitly (or via `s3_env`) to whatever talks to it.
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict:
    """Environment for boto3 (in this process and in subprocesses) to reach the moto server."""
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": s3_server, "AWS_EC2_METADATA_DISABLED": "true"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
