"""Bootstrap intervals and paired comparisons of evaluations (cyclegan.scores)."""

from __future__ import annotations

import numpy as np
import pytest

from cyclegan.scores import Scores, ci_keys, fid, mean_interval


def _psnr_scores(values_ab, values_ba=None, protocol="p1") -> Scores:
    paired = {"psnr_AtoB": np.asarray(values_ab, dtype=float)}
    if values_ba is not None:
        paired["psnr_BtoA"] = np.asarray(values_ba, dtype=float)
    inputs = {d: [f"{d}/{i}.png" for i in range(len(values_ab))] for d in ("AtoB", "BtoA")}
    return Scores(protocol, paired=paired, inputs=inputs)


def test_the_95_percent_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    truth, repeats = 14.0, 400
    covered = 0
    for _ in range(repeats):
        values = rng.normal(truth, 2.0, 40)  # 40 test images, per-image PSNR spread of 2 dB
        low, high = mean_interval(values, seed=int(rng.integers(1 << 30)))
        covered += low <= truth <= high
    # Percentile bootstrap intervals of a mean at n=40 run slightly narrow (about 93-94 %).
    assert 0.90 <= covered / repeats <= 0.98


def test_intervals_per_direction_and_pooled_bracket_their_estimates():
    rng = np.random.default_rng(1)
    scores = _psnr_scores(rng.normal(14, 2, 30), rng.normal(16, 2, 30))
    out = scores.intervals(["psnr"])
    assert set(out) == {
        *ci_keys("psnr"),
        *ci_keys("psnr_AtoB"),
        *ci_keys("psnr_BtoA"),
    }
    for key in ("psnr", "psnr_AtoB", "psnr_BtoA"):
        low, high = out[key + "_ci_low"], out[key + "_ci_high"]
        assert low < scores.value(key) < high
    # Pooling two directions' images narrows the interval of their mean.
    pooled = out["psnr_ci_high"] - out["psnr_ci_low"]
    assert pooled < out["psnr_AtoB_ci_high"] - out["psnr_AtoB_ci_low"]


def test_a_tiny_perturbation_is_within_the_noise_and_a_clear_gain_is_not():
    rng = np.random.default_rng(2)
    champion = rng.normal(14, 3, 40)
    same = _psnr_scores(champion + rng.normal(0, 0.05, 40)).compare(_psnr_scores(champion), "psnr")
    assert same.low < 0 < same.high and not same.significant
    better = _psnr_scores(champion + 1.0 + rng.normal(0, 0.3, 40)).compare(
        _psnr_scores(champion), "psnr"
    )
    assert better.significant and better.estimate == pytest.approx(1.0, abs=0.2)
    # Paired: the images' spread (3 dB) cancels, so the interval is far narrower than it.
    assert better.high - better.low < 0.5


def test_lower_is_better_metrics_count_an_improvement_as_positive():
    base = np.linspace(0.1, 0.3, 20)
    inputs = {"AtoB": [str(i) for i in range(20)]}
    worse = Scores("p", paired={"l1_AtoB": base + 0.05}, inputs=inputs)
    best = Scores("p", paired={"l1_AtoB": base}, inputs=inputs)
    assert best.compare(worse, "l1").estimate == pytest.approx(0.05)
    assert worse.compare(best, "l1").estimate == pytest.approx(-0.05)


def test_scores_from_another_protocol_or_other_images_are_not_compared():
    a = _psnr_scores([10, 11, 12])
    with pytest.raises(ValueError, match="another protocol"):
        a.compare(_psnr_scores([10, 11, 12], protocol="p2"), "psnr")
    other = _psnr_scores([10, 11, 12])
    other.inputs["AtoB"] = ["x", "y", "z"]
    assert a.comparable(other) == "was evaluated on other test images"


def test_fid_and_kid_intervals_from_features_computed_once(tmp_path):
    rng = np.random.default_rng(3)
    reals = rng.normal(0, 1, (30, 16))
    scores = Scores(
        "p",
        features={
            "fake_AtoB": rng.normal(0.5, 1, (30, 16)),
            "real_AtoB": reals,
            "fake_BtoA": rng.normal(0.5, 1, (30, 16)),
            "real_BtoA": reals,
        },
    )
    out = scores.intervals(["fid", "kid"])
    for key in ("fid", "fid_AtoB", "kid", "kid_BtoA"):
        assert out[key + "_ci_low"] < scores.value(key) < out[key + "_ci_high"]
    assert scores.value("fid_AtoB") == pytest.approx(
        fid(scores.features["fake_AtoB"], reals), rel=1e-6
    )
    # The file keeps everything (features as float32) and reads back without pickle.
    loaded = Scores.load(scores.save(tmp_path / "evaluation.npz"))
    assert loaded.protocol == "p" and loaded.comparable(scores) is None
    assert loaded.value("fid_AtoB") == pytest.approx(scores.value("fid_AtoB"), rel=1e-4)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an evaluation scores file"):
        Scores.load(tmp_path / "junk.npz")
