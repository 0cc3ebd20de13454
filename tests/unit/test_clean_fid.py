"""Clean FID/KID (clean-fid's definition: a float PIL bicubic resize with antialiasing to the
network's input) beside the unchanged legacy FID/KID, with random Inception weights: the
mechanics are what is checked, the real weights go through the same code."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_image_tensor, random_inception_file
from cyclegan import metrics as M
from cyclegan.config import TrainConfig
from cyclegan.evaluate import Evaluator
from cyclegan.scores import fid
from cyclegan.sources.synthetic import generate


@pytest.fixture(scope="module")
def inception(tmp_path_factory) -> M.InceptionFeatures:
    return M.load_inception(random_inception_file(tmp_path_factory))


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLEGAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CYCLEGAN_FEATURE_CACHE", raising=False)
    root = generate("colorshift", tmp_path / "data", n_train=1, n_test=3, size=24, seed=0)
    shutil.rmtree(root / "testA_gt")
    shutil.rmtree(root / "testB_gt")
    return root


def pil_resize(image: torch.Tensor, size: int) -> np.ndarray:
    """clean-fid's resize, written out: each channel a float ('F') PIL image, bicubic."""
    return np.stack(
        [
            np.asarray(
                Image.fromarray(channel.numpy().astype(np.float32), mode="F").resize(
                    (size, size), resample=Image.BICUBIC
                )
            )
            for channel in image
        ]
    )


@pytest.mark.parametrize("shape", [(24, 24), (40, 31), (400, 350)])
def test_clean_resize_is_pils_float_bicubic_up_and_down(shape):
    images = torch.randint(0, 256, (2, 3, *shape), dtype=torch.uint8)
    ours = M.clean_resize(images, M.INCEPTION_SIZE).numpy()
    theirs = np.stack([pil_resize(image, M.INCEPTION_SIZE) for image in images])
    assert ours.dtype == np.float32 and ours.shape == (2, 3, 299, 299)
    # 0.01 of a grey level (float rounding in the filters' sums): no uint8 quantisation anywhere
    assert np.abs(ours - theirs).max() < 1e-2
    assert np.abs(ours - np.round(ours)).max() > 0.1


def test_the_float_path_is_torch_fidelitys_network(inception):
    images = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8)
    assert torch.equal(inception(images), M.pool3(inception.net, images.float()).double())


def test_clean_fid_equals_the_definition_and_the_legacy_fid_is_unchanged(dataset, inception):
    cfg = TrainConfig(load_size=24, crop_size=24)
    both = Evaluator(
        dataset, cfg, ["fid", "kid", "fid_clean", "kid_clean"], inception=inception,
        show_progress=False,
    )  # fmt: skip
    result = both.evaluate(lambda x, d: -x)  # an inversion: a translation FID can see
    legacy = Evaluator(dataset, cfg, ["fid", "kid"], inception=inception, show_progress=False)
    alone = legacy.evaluate(lambda x, d: -x).metrics
    for key in ("fid_AtoB", "kid_BtoA", "fid"):
        assert result.metrics[key] == pytest.approx(alone[key], rel=1e-9)

    def features(folder: str, invert: bool) -> np.ndarray:
        images = [load_image_tensor(p) for p in sorted((dataset / folder).iterdir())]
        resized = [pil_resize(255 - i if invert else i, 299) for i in images]
        return M.pool3(inception.net, torch.from_numpy(np.stack(resized))).double().numpy()

    fakes, reals = features("testA", invert=True), features("testB", invert=False)
    assert result.metrics["fid_clean_AtoB"] == pytest.approx(fid(fakes, reals), rel=1e-3)
    assert result.metrics["fid_clean_AtoB"] != pytest.approx(result.metrics["fid_AtoB"], rel=1e-2)
    kid, _ = M.kid_from_features(torch.from_numpy(fakes), torch.from_numpy(reals))
    assert result.metrics["kid_clean_AtoB"] == pytest.approx(kid, rel=1e-2, abs=1e-6)
    for key in ("fid_clean", "kid_clean_BtoA"):
        low, high = result.metrics[key + "_ci_low"], result.metrics[key + "_ci_high"]
        assert low <= result.metrics[key] <= high
    assert result.scores.value("fid_clean") == pytest.approx(result.metrics["fid_clean"])
    # The fingerprint names the clean resize; the legacy metrics' fingerprint is what it was.
    assert f"clean={M.CLEAN_RESIZE}@299" in both.protocol
    assert "clean=" not in legacy.protocol


def test_reference_features_are_extracted_once_per_dataset_and_protocol(
    dataset, inception, monkeypatch
):
    cfg = TrainConfig(load_size=24, crop_size=24)
    extracted = []
    clean = inception.clean
    monkeypatch.setattr(inception, "clean", lambda x: extracted.append(len(x)) or clean(x))

    def trial():  # a new evaluator: another trial's process on the node, sharing its disk cache
        return Evaluator(dataset, cfg, ["fid_clean"], inception=inception, show_progress=False)

    first = trial()
    for _epoch in range(2):
        first.evaluate(lambda x, d: x.flip(-1))
    trial().evaluate(lambda x, d: x.flip(-1))
    # The real sets (3 images per domain) once; the translations (3 + 3) at each evaluation.
    assert sum(extracted) == 2 * 3 + 3 * (3 + 3)
    assert (first.cache.misses, first.cache.hits) == (2, 2)

    monkeypatch.setattr(M, "CLEAN_RESIZE", "another-resize")  # another protocol: extracted again
    other = trial()
    assert other.protocol != first.protocol
    other.evaluate(lambda x, d: x)
    assert other.cache.misses == 2
