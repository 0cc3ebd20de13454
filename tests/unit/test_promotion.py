"""The promotion rule (orchestrator.tracking.promotion): doing nothing first, then the champion, by
`tracking.promote`, image by image under one protocol."""

from __future__ import annotations

import numpy as np
import pytest

from cyclegan.scores import Scores
from orchestrator.tracking.promotion import Challenger, Champion, decide

RNG = np.random.default_rng(0)
IMAGES = 40
CHAMPION_PSNR = RNG.normal(16.0, 3.0, IMAGES)  # per test image: the images differ a lot
NOTHING_PSNR = CHAMPION_PSNR - 2.0 + RNG.normal(0, 0.3, IMAGES)


def scores(values, protocol: str = "res=32") -> Scores:
    inputs = {"AtoB": [f"testA/{i:05d}.png" for i in range(IMAGES)]}
    return Scores(protocol, paired={"psnr_AtoB": np.asarray(values)}, inputs=inputs)


def challenger(values, protocol: str = "res=32", nothing=NOTHING_PSNR) -> Challenger:
    mine = scores(values, protocol)
    return Challenger("psnr", "max", mine.value("psnr"), mine, scores(nothing, protocol))


def champion(values=CHAMPION_PSNR, protocol: str = "res=32", version: str = "1") -> Champion:
    theirs = scores(values, protocol)
    return Champion(version, "psnr", "max", theirs.value("psnr"), theirs)


def test_a_tiny_perturbation_is_not_promoted_when_significant_but_is_when_better():
    tiny = CHAMPION_PSNR + 0.02 + np.tile([0.1, -0.1], IMAGES // 2)  # +0.02 dB on average
    strict = decide("significant", challenger(tiny), champion())
    assert not strict.promote and strict.improvement.low < 0 < strict.improvement.high
    assert strict.reason.startswith("not promoted: +0.0")
    assert strict.reason.endswith("over v1 is within the noise (promote: significant)")
    loose = decide("better", challenger(tiny), champion())
    assert loose.promote and loose.reason.startswith("promoted: +0.0")


def test_a_clearly_better_generator_is_promoted_and_a_worse_one_is_not():
    better = decide("significant", challenger(CHAMPION_PSNR + 1.0), champion())
    assert better.promote and better.improvement.estimate == pytest.approx(1.0)
    assert "over v1 (promote: significant); beats the untranslated inputs by +" in better.reason
    worse = decide("better", challenger(CHAMPION_PSNR - 1.0), champion())
    assert not worse.promote and "no improvement" in worse.reason
    assert decide("always", challenger(CHAMPION_PSNR - 1.0), champion()).promote


@pytest.mark.parametrize("rule", ["significant", "better", "always"])
def test_a_generator_worse_than_the_untranslated_inputs_is_never_promoted(rule):
    nothing = CHAMPION_PSNR + 1.0  # doing nothing scores higher than this generator
    for current in (None, champion(CHAMPION_PSNR - 5)):
        decision = decide(rule, challenger(CHAMPION_PSNR, nothing=nothing), current)
        assert not decision.promote and decision.over_untranslated.estimate < 0
        assert "over the untranslated inputs is no improvement" in decision.reason


def test_within_the_noise_of_doing_nothing_is_not_promoted_as_a_first_champion():
    close = NOTHING_PSNR + 0.02 + np.tile([0.3, -0.3], IMAGES // 2)  # mean +0.02, spread 0.3
    decision = decide("significant", challenger(close), None)
    assert not decision.promote and "untranslated inputs is within the noise" in decision.reason
    first = decide("significant", challenger(CHAMPION_PSNR), None)
    assert first.promote and first.reason.startswith("promoted: first champion; beats the")


def test_a_champion_scored_under_another_protocol_is_evaluated_again_before_the_comparison():
    asked = []

    def reevaluate(version: str) -> Scores:
        asked.append(version)
        return scores(CHAMPION_PSNR, protocol="res=64")

    mine = challenger(CHAMPION_PSNR + 1.0, protocol="res=64")
    old = champion(CHAMPION_PSNR + 3.0, protocol="res=32")  # higher, but under another protocol
    decision = decide("significant", mine, old, reevaluate)
    assert asked == ["1"] and decision.promote
    assert "over v1 (evaluated again under this protocol) (promote: significant)" in decision.reason
    assert decision.improvement.estimate == pytest.approx(1.0)
    # Without a way to evaluate it again, two protocols are never compared: the alias stays.
    refused = decide("significant", mine, old)
    assert not refused.promote and asked == ["1"]
    assert "was evaluated with another protocol" in refused.reason
    assert refused.reason.endswith("; not compared")

    def failing(version: str) -> Scores:
        raise ValueError("the dataset is gone")

    failed = decide("better", mine, old, failing)
    assert not failed.promote and "evaluating it again failed: the dataset is gone" in failed.reason


def test_without_evidence_only_the_values_can_decide_and_significant_refuses():
    bare = Challenger("psnr", "max", 13.0)
    old = Champion("1", "psnr", "max", 12.0)
    assert decide("better", bare, old).reason == "promoted: beats v1 (psnr=12)"
    refused = decide("significant", bare, old)
    assert not refused.promote and "no per-image evaluation evidence" in refused.reason
    other = decide("always", bare, Champion("1", "fid", "min", 40.0))
    assert not other.promote and "is ranked by fid (min), not psnr" in other.reason
    with pytest.raises(ValueError, match="promote 'sometimes'"):
        decide("sometimes", bare, old)
