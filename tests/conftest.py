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
