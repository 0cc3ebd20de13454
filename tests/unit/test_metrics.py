"""Evaluation metrics: FID/KID through the real weights-loading path, paired metrics by hand,
synthetic ground truth, the missing-weights error and the real-set feature cache."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_image_tensor, random_inception_file
from cyclegan import metrics as M
from cyclegan.config import TrainConfig
from cyclegan.errors import UserError
from cyclegan.evaluate import Evaluator
from cyclegan.scores import fid
from cyclegan.sources.synthetic import KINDS, generate


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    return random_inception_file(tmp_path_factory)


@pytest.fixture
def weights_env(weights_file, monkeypatch, tmp_path) -> Path:
    """Weights found through $CYCLEGAN_INCEPTION_WEIGHTS; a private feature cache and torch home."""
    monkeypatch.setenv(M.WEIGHTS_ENV, str(weights_file))
    monkeypatch.setenv("CYCLEGAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CYCLEGAN_FEATURE_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return weights_file


@pytest.fixture(scope="module")
def torch_home(weights_file, tmp_path_factory) -> Path:
    """A torch home whose hub cache holds the weights, where torch-fidelity's own download puts
    them."""
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    os.symlink(weights_file, home / "hub" / "checkpoints" / M.INCEPTION_FILE)
    return home


@pytest.fixture(scope="module")
def inception(torch_home) -> M.InceptionFeatures:
    """Loaded the way a user with the file in torch's cache gets it: no option, no env var,
    offline."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(M.WEIGHTS_ENV, raising=False)
        mp.setenv("TORCH_HOME", str(torch_home))
        mp.setenv(M.OFFLINE_ENV, "1")
        return M.load_inception()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> torch.Tensor:
    root = generate(
        "stripes", tmp_path_factory.mktemp("imgs"), n_train=1, n_test=4, size=32, seed=3
    )
    return torch.stack([load_image_tensor(p) for p in sorted((root / "testA").iterdir())])


def _perturb(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed)) * sigma
    return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)


# -- the weights file ---------------------------------------------------------------------------
def test_weights_are_found_by_option_env_var_and_torch_hub_cache_and_loaded_into_torch_fidelity(
    weights_file, torch_home, inception, monkeypatch
):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    monkeypatch.delenv(M.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv(M.OFFLINE_ENV, "1")
    cached = torch_home / "hub" / "checkpoints" / M.INCEPTION_FILE
    assert M.find_inception_weights() == cached  # torch's hub cache
    assert M.find_inception_weights(weights_file) == weights_file  # --inception_weights wins
    monkeypatch.setenv(M.WEIGHTS_ENV, str(weights_file))
    assert M.find_inception_weights() == weights_file  # then $CYCLEGAN_INCEPTION_WEIGHTS

    # The `inception` fixture was loaded from the hub cache into torch-fidelity's own extractor.
    assert isinstance(inception.net, FeatureExtractorInceptionV3) and inception.weights == cached
    reference = torch.load(weights_file, weights_only=True)
    loaded = inception.net.state_dict()
    assert all(
        torch.equal(loaded[k], reference[k])
        for k in ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.conv.weight", "fc.bias")
    )
    features = inception(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert features.shape == (1, 2048) and features.abs().sum() > 0


def test_missing_weights_error_names_the_file_and_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.delenv(M.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(M.OFFLINE_ENV, "1")
    with pytest.raises(M.MissingWeightsError) as err:
        M.load_inception()
    message = str(err.value)
    assert M.INCEPTION_FILE in message and M.INCEPTION_URL in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / M.INCEPTION_FILE) in message
    assert M.WEIGHTS_ENV in message
    assert isinstance(err.value, UserError)

    monkeypatch.setenv(M.WEIGHTS_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(M.MissingWeightsError, match="nowhere.pth: file not found"):
        M.find_inception_weights()
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(UserError, match="wrong.pth: not InceptionV3 FID weights"):
        M.load_inception(wrong)


# -- FID and KID --------------------------------------------------------------------------------
def test_fid_of_a_set_against_itself_is_zero_and_grows_with_perturbation(inception, images):
    # Inception resizes every image to 299x299: 4 images x 4 sets keeps this test to seconds.
    real = inception(images)
    perturbed = [inception(_perturb(images, sigma)) for sigma in (4, 24, 96)]
    fids = [M.fid_from_features(f, real) for f in perturbed]
    assert M.fid_from_features(real, real) == pytest.approx(0.0, abs=1e-9 * fids[0] + 1e-12)
    assert 0 < fids[0] < fids[1] < fids[2]

    kids = [M.kid_from_features(f, real)[0] for f in (real, *perturbed)]
    assert kids[0] < kids[1] < kids[2] < kids[3]
    assert abs(kids[0]) < 0.1 * kids[3]


def test_fast_fid_equals_torch_fidelity_formula():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    g = torch.Generator().manual_seed(0)
    for n1, n2 in ((6, 9), (40, 50)):  # fewer and more images than feature dimensions
        f1 = torch.randn(n1, 16, generator=g, dtype=torch.float64)
        f2 = torch.randn(n2, 16, generator=g, dtype=torch.float64) * 1.5 + 0.3
        expected = fid_statistics_to_metric(
            fid_features_to_statistics(f1), fid_features_to_statistics(f2), False
        )
        assert M.fid_from_features(f1, f2) == pytest.approx(
            expected["frechet_inception_distance"], rel=1e-6
        )
        assert fid(f1.numpy(), f2.numpy()) == pytest.approx(
            expected["frechet_inception_distance"], rel=1e-6
        )


# -- paired metrics -----------------------------------------------------------------------------
def test_paired_metrics_match_hand_computations():
    target = torch.tensor(
        [[[[0, 255], [255, 0]]], [[[10, 20], [30, 40]]]], dtype=torch.uint8
    )  # 2 images, 1x2x2
    pred = torch.tensor(
        [[[[51, 255], [255, 0]]], [[[10, 20], [30, 40]]]], dtype=torch.uint8
    )  # image 0: one pixel off by 51
    values = M.paired_metrics(pred, target, ["l1", "psnr"])
    assert values["l1"] == pytest.approx(((51 / 255) / 4 + 0) / 2)
    assert math.isinf(values["psnr"])  # image 1 is identical
    assert M.psnr_per_image(pred, target)[0].item() == pytest.approx(
        10 * math.log10(1 / ((0.2**2) / 4))
    )

    # SSIM of two constant images reduces to the luminance term (2ab + C1) / (a^2 + b^2 + C1), C1 =
    # 0.01^2.
    a, b = (
        torch.full((1, 3, 16, 16), 0.3, dtype=torch.float64),
        torch.full((1, 3, 16, 16), 0.6, dtype=torch.float64),
    )
    assert M.paired_metrics(a, b, ["ssim"])["ssim"] == pytest.approx(
        (2 * 0.18 + 1e-4) / (0.09 + 0.36 + 1e-4), rel=1e-9
    )
    assert M.paired_metrics(a, a)["ssim"] == pytest.approx(1.0)

    # And on a random pair, the formula written out: Gaussian-weighted local statistics (sigma 1.5,
    # truncated at 3.5 sigma), the SSIM map without its 5-pixel border, averaged over pixels and
    # channels.
    from scipy.ndimage import gaussian_filter

    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (1, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = _perturb(x, 30)
    maps = []
    for u, v in zip(x[0].double().numpy() / 255, y[0].double().numpy() / 255):
        blur = lambda z: gaussian_filter(z, sigma=1.5, truncate=3.5)  # noqa: E731
        mu_u, mu_v = blur(u), blur(v)
        var_u, var_v, cov = blur(u * u) - mu_u**2, blur(v * v) - mu_v**2, blur(u * v) - mu_u * mu_v
        c1, c2 = 0.01**2, 0.03**2
        maps.append(
            (
                (2 * mu_u * mu_v + c1)
                * (2 * cov + c2)
                / ((mu_u**2 + mu_v**2 + c1) * (var_u + var_v + c2))
            )[5:-5, 5:-5]
        )
    assert M.paired_metrics(y, x, ["ssim"])["ssim"] == pytest.approx(float(np.mean(maps)), rel=1e-9)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_synthetic_ground_truth_is_perfect_and_the_untranslated_baseline_is_worse(
    kind, direction, tmp_path
):
    root = generate(kind, tmp_path / kind, n_train=1, n_test=4, size=32, seed=0)
    cfg = TrainConfig(
        load_size=32, crop_size=32, direction=direction
    )  # BtoA: G_A's inputs are testB/
    evaluator = Evaluator(root, cfg, ["l1", "psnr", "ssim"], show_progress=False)

    # An oracle that answers each test image with its ground truth, through the whole pipeline.
    truth = {}
    for folder in ("testA", "testB"):
        for path in sorted((root / folder).iterdir()):
            truth[load_image_tensor(path).numpy().tobytes()] = load_image_tensor(
                root / f"{folder}_gt" / path.name
            )

    def oracle(x: torch.Tensor, direction: str) -> torch.Tensor:
        inputs = ((x + 1) * 127.5 + 0.5).to(torch.uint8)
        return torch.stack([truth[i.numpy().tobytes()] for i in inputs]).float() / 127.5 - 1

    perfect = evaluator.evaluate(oracle).metrics
    baseline = evaluator.evaluate(lambda x, direction: x).metrics  # untranslated inputs
    for d in ("AtoB", "BtoA"):
        assert (
            math.isinf(perfect[f"psnr_{d}"])
            and perfect[f"l1_{d}"] == 0
            and perfect[f"ssim_{d}"] == pytest.approx(1)
        )
        assert (
            baseline[f"psnr_{d}"] < 30
            and baseline[f"l1_{d}"] > 0.02
            and baseline[f"ssim_{d}"] < 0.97
        )
    assert baseline["psnr"] == pytest.approx((baseline["psnr_AtoB"] + baseline["psnr_BtoA"]) / 2)
    assert baseline["eval_time_s"] > 0


def test_every_metric_has_an_interval_and_the_untranslated_reference_is_the_identitys(tmp_path):
    root = generate("stripes", tmp_path / "stripes", n_train=1, n_test=6, size=32, seed=0)
    cfg = TrainConfig(load_size=32, crop_size=32)
    evaluator = Evaluator(root, cfg, ["l1", "psnr"], show_progress=False)
    reference = evaluator.untranslated()
    identity = evaluator.evaluate(lambda x, direction: x)
    for key in ("psnr", "psnr_AtoB", "l1_BtoA"):
        assert reference.metrics[key] == pytest.approx(identity.metrics[key])
        low, high = reference.metrics[key + "_ci_low"], reference.metrics[key + "_ci_high"]
        assert low < reference.metrics[key] < high
    assert len(reference.scores.paired["psnr_BtoA"]) == 6
    assert reference.scores.inputs["AtoB"] == [f"testA/{i:05d}.png" for i in range(6)]
    # The fingerprint names the resolution and changes with it and with the test images' bytes.
    assert "res=32" in evaluator.protocol and "fid=none" in evaluator.protocol
    assert Evaluator(root, TrainConfig(load_size=24, crop_size=24), ["psnr"]).protocol != (
        evaluator.protocol
    )
    first = sorted((root / "testA").iterdir())[0]
    first.write_bytes(sorted((root / "testA").iterdir())[1].read_bytes())
    assert Evaluator(root, cfg, ["l1", "psnr"]).protocol != evaluator.protocol


def test_paired_metrics_alone_without_ground_truth_and_unknown_metrics_are_errors(tmp_path):
    root = generate("colorshift", tmp_path / "real", n_train=1, n_test=2, size=32, seed=0)
    shutil.rmtree(root / "testA_gt")
    shutil.rmtree(root / "testB_gt")
    cfg = TrainConfig(load_size=32, crop_size=32)
    with pytest.raises(UserError, match="--eval_metrics psnr,l1: .*testA_gt"):
        Evaluator(root, cfg, ["psnr", "l1"])
    with pytest.raises(UserError, match="unknown metric.*bogus"):
        Evaluator(root, cfg, ["fid", "bogus"])


def test_real_set_features_are_cached_and_the_second_evaluation_hits_the_cache(
    tmp_path, weights_env, inception
):
    # A real-style dataset: no ground truth, so psnr is reported unavailable next to fid.
    root = generate("colorshift", tmp_path / "data", n_train=1, n_test=2, size=32, seed=0)
    shutil.rmtree(root / "testA_gt")
    shutil.rmtree(root / "testB_gt")
    cfg = TrainConfig(load_size=32, crop_size=32)

    def evaluate():  # a new evaluator each time, as in a new process: only the disk cache is shared
        evaluator = Evaluator(root, cfg, ["fid", "psnr"], show_progress=False, inception=inception)
        return evaluator.evaluate(lambda x, d: x)

    first = evaluate()
    assert (first.feature_cache_hits, first.feature_cache_misses) == (
        0,
        2,
    )  # real A and real B extracted
    cache = tmp_path / "cache" / "features"  # $CYCLEGAN_CACHE_DIR/features
    assert len(list(cache.glob("*.pt"))) == 2
    assert "psnr" in first.unavailable and "psnr" not in first.metrics and first.metrics["fid"] > 0
    assert first.n_images == {"AtoB": 2, "BtoA": 2}

    second = evaluate()
    assert (second.feature_cache_hits, second.feature_cache_misses) == (2, 0)
    assert second.metrics["fid"] == pytest.approx(first.metrics["fid"], rel=1e-9)


def test_feature_cache_key_follows_files_resolution_and_extractor(tmp_path):
    root = generate("colorshift", tmp_path / "data", n_train=1, n_test=2, size=16, seed=0)
    files = sorted((root / "testB").iterdir())
    calls = []

    def compute():
        calls.append(1)
        return torch.ones(len(files), 4, dtype=torch.float64)

    def key(**changes):
        parts = dict(
            files=M.files_fingerprint(files),
            channels=3,
            preprocess="resize_and_crop",
            crop_size=16,
            extractor="abc",
        )
        return M.FeatureCache.key(**{**parts, **changes})

    cache = M.FeatureCache(tmp_path / "features")
    original = key()
    cache.get_or_compute(original, compute)
    assert torch.equal(
        M.FeatureCache(tmp_path / "features").get_or_compute(original, compute),
        torch.ones(2, 4, dtype=torch.float64),
    )
    assert len(calls) == 1
    assert len({original, key(crop_size=32), key(extractor="abd"), key(channels=1)}) == 4
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(
        files[0]
    )  # a changed image changes the key
    assert key() != original


def test_ssim_equals_scikit_images_on_images_of_every_size():
    """Our SSIM (torch, no scikit-image at run time) against the reference implementation, also for
    images under 11 pixels (narrower window) and non-square ones."""
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(2)
    for shape in ((2, 3, 32, 32), (1, 3, 7, 9), (1, 1, 64, 40), (3, 3, 11, 11)):
        x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
        y = _perturb(x, 40)
        u, v = x.double().numpy() / 255, y.double().numpy() / 255
        radius = (min(shape[-2:]) - 1) // 2
        expected = [
            structural_similarity(
                a,
                b,
                channel_axis=0,
                data_range=1.0,
                gaussian_weights=True,
                sigma=min(1.5, radius / 3.5),
                use_sample_covariance=False,
            )
            for a, b in zip(v, u)
        ]
        assert M.ssim_per_image(y, x).tolist() == pytest.approx(expected, rel=1e-9), shape
