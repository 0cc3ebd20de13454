"""Whether a task's new best (the challenger) becomes its `champion`: the promotion rule.

Two tests, on the same test images with the same protocol (cyclegan.scores), each a paired
bootstrap of the improvement with its 95 % interval:

1. **Doing nothing.** The challenger must beat the untranslated test images (scored as their own
   translations). A model that does not is never promoted, whatever the rule: under
   `significant` the interval must exclude zero, under `better` and `always` the estimate must
   be above it.
2. **The champion**, by `tracking.promote`:
   - `significant` (the default): the interval of the improvement over the champion excludes zero;
   - `better`: any improvement of the estimate;
   - `always`: the newest version becomes the champion.

   A champion evaluated under another protocol or on other test images is evaluated again
   (`reevaluate`) before the comparison; when it cannot be, the alias does not move. Numbers from
   two protocols are never compared; only `better` compares the values of a champion registered
   before versions kept their evidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

from cyclegan.scores import Difference, Scores
from orchestrator.config.schema import PromoteRule, Tracking

PROMOTE_RULES = get_args(PromoteRule)
DEFAULT_RULE = Tracking.model_fields["promote"].default

# The champion's evidence under the challenger's protocol: its version -> Scores, or a ValueError
# saying why it cannot be had.
Reevaluate = Callable[[str], Scores]


@dataclass(frozen=True)
class Challenger:
    """A task's new best as the rule sees it."""

    metric: str
    mode: str
    value: float
    scores: Scores | None = None  # its evaluation's evidence
    untranslated: Scores | None = None  # the test images scored untranslated


@dataclass(frozen=True)
class Champion:
    """The version holding `champion`, as registered."""

    version: str
    metric: str | None
    mode: str | None
    value: float | None
    scores: Scores | None = None


@dataclass
class Decision:
    promote: bool
    reason: str
    over_untranslated: Difference | None = None
    improvement: Difference | None = None  # over the champion, when there was one to beat


def _beats(difference: Difference, rule: str) -> bool:
    return difference.significant if rule == "significant" else difference.estimate > 0


def _unit(metric: str) -> str:
    return " dB" if metric.startswith("psnr") else ""


def decide(
    rule: str,
    challenger: Challenger,
    champion: Champion | None,
    reevaluate: Reevaluate | None = None,
) -> Decision:
    """Apply `rule` (one of PROMOTE_RULES) to `challenger` against doing nothing and `champion`."""
    if rule not in PROMOTE_RULES:
        raise ValueError(f"promote {rule!r}: use one of {', '.join(PROMOTE_RULES)}")
    metric, unit = challenger.metric, _unit(challenger.metric)
    if not math.isfinite(challenger.value):
        return Decision(False, f"not promoted: {metric} is {challenger.value}")
    decision = Decision(False, "")
    mine, nothing = challenger.scores, challenger.untranslated
    if mine is not None and nothing is not None and mine.comparable(nothing) is None:
        gain = decision.over_untranslated = mine.compare(nothing, metric)
        if not _beats(gain, "significant" if rule == "significant" else "better"):
            decision.reason = (
                f"not promoted: {gain.describe(unit)} over the untranslated inputs is "
                + ("within the noise" if gain.estimate > 0 else "no improvement")
                + f" (promote: {rule})"
            )
            return decision
    if champion is None:
        return _promoted(decision, "first champion")
    if (champion.metric, champion.mode) != (metric, challenger.mode):
        decision.reason = (
            f"not promoted: champion v{champion.version} is ranked by "
            f"{champion.metric or 'no metric'} ({champion.mode or 'no mode'}), not {metric} "
            f"({challenger.mode}); move the alias by hand to change"
        )
        return decision
    if rule == "always":
        return _promoted(decision, f"replaces v{champion.version} (promote: always)")
    if mine is None:
        return _by_value(decision, rule, challenger, champion)
    theirs = champion.scores
    why = "has no evaluation evidence" if theirs is None else mine.comparable(theirs)
    if why:
        try:
            theirs = reevaluate(champion.version) if reevaluate else None
        except ValueError as err:
            why = f"{why}, and evaluating it again failed: {err}"
            theirs = None
        if theirs is None or mine.comparable(theirs):
            if rule == "better" and champion.scores is None:  # registered before evidence was kept
                return _by_value(decision, rule, challenger, champion)
            decision.reason = f"not promoted: champion v{champion.version} {why}; not compared"
            return decision
    gain = decision.improvement = mine.compare(theirs, metric)
    over = f"{gain.describe(unit)} over v{champion.version}" + (
        " (evaluated again under this protocol)" if why else ""
    )
    if _beats(gain, rule):
        return _promoted(decision, f"{over} (promote: {rule})")
    decision.reason = (
        f"not promoted: {over} is "
        + ("within the noise" if rule == "significant" and gain.estimate > 0 else "no improvement")
        + f" (promote: {rule})"
    )
    return decision


def _promoted(decision: Decision, why: str) -> Decision:
    gain = decision.over_untranslated
    tail = f"; beats the untranslated inputs by {gain.describe()}" if gain else ""
    decision.promote, decision.reason = True, f"promoted: {why}{tail}"
    return decision


def _by_value(
    decision: Decision, rule: str, challenger: Challenger, champion: Champion
) -> Decision:
    """Without the challenger's per-image evidence only `better` can decide, on the values."""
    if rule == "significant":
        decision.reason = (
            "not promoted: no per-image evaluation evidence to test the improvement "
            "(promote: significant)"
        )
        return decision
    previous = champion.value
    if previous is None or not math.isfinite(previous):
        return _promoted(decision, f"v{champion.version} has no {challenger.metric} value")
    better = (
        challenger.value < previous if challenger.mode == "min" else challenger.value > previous
    )
    if better:
        return _promoted(
            decision, f"beats v{champion.version} ({challenger.metric}={previous:.4g})"
        )
    decision.reason = (
        f"not promoted: champion v{champion.version} has {challenger.metric}={previous:.4g}, "
        "at least as good"
    )
    return decision
