"""search.constraints: the best trial by one metric among those meeting conditions on others
(e.g. dino_struct within 1.2x the baseline's)."""

from __future__ import annotations

import pytest

from cyclegan.errors import UserError
from orchestrator.config.plan import parse_manifest
from orchestrator.config.schema import Constraint
from orchestrator.sweep.constraints import broken, summary_lines, unchecked
from orchestrator.sweep.results import TaskResult, TrialRecord, pick_best, summary_table


def _trial(trial_id, fid, struct, psnr=20.0, baseline=False):
    rows = [{"epoch": 1, "fid": fid + 5, "dino_struct": 0.0}, {"epoch": 2, "fid": fid}]
    rows[1].update({"dino_struct": struct} if struct is not None else {})
    rows[1]["psnr"] = psnr
    return TrialRecord(
        trial_id, {}, "finished", fid, 2, rows, None, best_epoch=2, baseline=baseline
    )


def test_the_best_trial_by_fid_whose_structure_stays_within_the_baselines():
    base = _trial("base", 50.0, 0.010, baseline=True)
    trials = [
        base,
        _trial("far", 30.0, 0.013),
        _trial("near", 40.0, 0.0119),
        _trial("none", 1, None),
    ]
    within = [Constraint(metric="dino_struct", baseline_factor=1.2)]
    why = {t.trial_id: broken(t, within, base) for t in trials}
    assert why["base"] is None and why["near"] is None  # 0.0119 <= 1.2 x 0.010
    assert why["far"] == "breaks dino_struct within 1.2x the baseline's: dino_struct 0.013 > 0.012"
    assert "no dino_struct at its best epoch" in why["none"]
    assert pick_best([t for t in trials if why[t.trial_id] is None], "min").trial_id == "near"
    # A metric to maximise: at least baseline / factor; absolute bounds both ways.
    assert broken(trials[1], [Constraint(metric="psnr", baseline_factor=2)], base) is None
    assert "psnr 20 < 25" in broken(base, [Constraint(metric="psnr", min=25)], base)
    assert broken(base, [Constraint(metric="dino_struct", max=0.01)], base) is None
    # No baseline value: not checked, and said so.
    assert broken(trials[1], within, None) is None and unchecked(within, None) == [
        "dino_struct within 1.2x the baseline's"
    ]
    result = TaskResult("t", "d", "fid", "min", trials, "near", baseline_trial_id="base")
    result.constraints = {"unranked": {"far": why["far"]}, "unchecked": []}
    table = summary_table([result])
    assert f"t: trial far not ranked: {why['far']}" in table.splitlines()
    # The structure distance shows beside the ranking metric, with its interval where recorded.
    trials[2].history[1].update(dino_struct_ci_low=0.011, dino_struct_ci_high=0.0128)
    assert "fid=40 @ epoch 2 (min); dino_struct=0.0119 [0.011, 0.0128]" in summary_table([result])
    assert summary_lines("t", None) == []


def test_constraints_are_checked_in_the_manifest_and_evaluated_every_epoch():
    text = """
name: c
tasks:
  - name: t
    data: synthetic://colorshift
    train: {eval_metrics: "fid"}
    search: {metric: fid, constraints: [%s]}
"""
    (plan,) = parse_manifest(text % "{metric: dino_struct, baseline_factor: 1.2}").plans
    config = plan.trial_config({}, "x")
    assert config.eval_freq == 1 and config.eval_metrics == "fid,dino_struct"
    with pytest.raises(UserError, match="exactly one of max, min, baseline_factor"):
        parse_manifest(text % "{metric: dino_struct, max: 1, min: 0}")
    with pytest.raises(UserError, match="unknown metric 'dino'"):
        parse_manifest(text % "{metric: dino, max: 1}")


def test_a_registered_version_carries_its_other_metrics_for_models_show():
    import numpy as np

    from cyclegan.scores import Scores
    from orchestrator.tracking.promotion import Challenger
    from orchestrator.tracking.registry import _evidence_tags

    rng = np.random.default_rng(0)
    scores = Scores("res=32")
    for d in ("AtoB", "BtoA"):
        scores.paired[f"psnr_{d}"] = rng.normal(20, 1, 8)
        scores.paired[f"dino_struct_{d}"] = rng.uniform(0.01, 0.02, 8)
    tags = _evidence_tags(Challenger("psnr", "max", scores.value("psnr"), scores))
    low, high = scores.interval("dino_struct")
    assert tags["evaluation"] == (
        f"dino_struct={scores.value('dino_struct'):.4g} [{low:.4g}, {high:.4g}]"
    )
