"""DINO-struct with random weights (the mechanics; DINO's real ViT-B/8 goes through the same code):
zero for an unchanged image, growing with a known distortion, per image with its interval, in the
protocol's fingerprint; and the one message for a missing weights file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import load_image_tensor
from cyclegan import structure as S
from cyclegan.config import TrainConfig
from cyclegan.evaluate import Evaluator
from cyclegan.metric_names import DINO_FILE, DINO_WEIGHTS_ENV
from cyclegan.sources.synthetic import generate

SMALL = "vit_tiny_patch16_224"  # DINO's ViT-B/8 costs ~10 s an image on a busy 2-core CPU


def _random_vit(path: Path, seed: int = 0) -> Path:
    import timm

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(timm.create_model(SMALL, pretrained=False, num_classes=0).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return _random_vit(tmp_path_factory.mktemp("dino") / DINO_FILE)


@pytest.fixture(scope="module")
def structure(weights) -> S.StructureDistance:
    return S.load_structure(weights, architecture=SMALL)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate("stripes", tmp_path_factory.mktemp("data"), n_train=1, n_test=3, size=32)


def test_zero_for_identical_images_and_growing_with_the_distortion(structure, dataset):
    images = torch.stack([load_image_tensor(p) for p in sorted((dataset / "testA").iterdir())])
    assert torch.equal(structure(images, images), torch.zeros(3, dtype=torch.float64))
    shifted = [images.roll(shift, dims=-1) for shift in (2, 8, 16)]  # the layout moves further
    distances = [structure(images, s).mean().item() for s in shifted]
    assert 0 < distances[0] < distances[1] < distances[2]
    # A brightness change keeps the layout: a smaller distance than moving it by half the image.
    brighter = (images.int() + 40).clamp(0, 255).to(torch.uint8)
    assert structure(images, brighter).mean().item() < distances[2]


def test_per_direction_with_intervals_and_in_the_fingerprint(structure, dataset, weights):
    cfg = TrainConfig(load_size=32, crop_size=32, structure_weights=str(weights))
    evaluator = Evaluator(dataset, cfg, ["dino_struct"], structure=structure, show_progress=False)
    result = evaluator.evaluate(lambda x, d: x.roll(8, dims=-1))
    for key in ("dino_struct_AtoB", "dino_struct_BtoA", "dino_struct"):
        low, high = result.metrics[key + "_ci_low"], result.metrics[key + "_ci_high"]
        assert 0 < low <= result.metrics[key] <= high
    assert len(result.scores.paired["dino_struct_AtoB"]) == 3
    assert evaluator.untranslated().metrics["dino_struct"] == 0
    assert f"struct={S.DEFINITION}" in evaluator.protocol
    assert f"struct_weights_sha256={structure.sha256}" in evaluator.protocol
    # Other weights (found through the config's file): another fingerprint.
    other = _random_vit(weights.parent / "other" / DINO_FILE, seed=1)
    found = Evaluator(dataset, cfg.replace(structure_weights=str(other)), ["dino_struct"])
    assert found.structure_weights == other and found.protocol != evaluator.protocol


def test_a_missing_weights_file_gets_one_message_saying_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.delenv(DINO_WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / DINO_FILE
    with pytest.raises(S.MissingStructureWeightsError) as err:
        Evaluator(
            generate("stripes", tmp_path / "d", 1, 2, size=32), TrainConfig(), ["dino_struct"]
        )
    assert str(cached) in str(err.value) and S.DINO_URL in str(err.value)
    assert DINO_WEIGHTS_ENV in str(err.value) and "--structure_weights" in str(err.value)
    monkeypatch.setenv(DINO_WEIGHTS_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(
        S.MissingStructureWeightsError, match=f"nowhere.pth: file not found.*{DINO_FILE}"
    ):
        S.find_dino_weights()
