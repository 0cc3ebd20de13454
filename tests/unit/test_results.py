"""What a sweep found: trials ranked by their best epoch, the summary table against the baseline,
and the Python API that reads a results file back."""

from __future__ import annotations

import json

import pytest

from cyclegan.errors import UserError
from orchestrator.sweep.results import (
    TaskResult,
    TrialRecord,
    load_results,
    pick_best,
    summary_table,
    write_results,
)


def _trial(
    trial_id: str,
    metric: float | None,
    status: str = "finished",
    baseline: bool = False,
    best_epoch: int = 2,
) -> TrialRecord:
    history = [{"epoch": 1, "psnr": 10.0}, {"epoch": 2, "psnr": metric}, {"epoch": 3, "psnr": 9.0}]
    return TrialRecord(
        trial_id=trial_id,
        params={"lambda_cyc": 10 if baseline else 5},
        status=status,
        metric=metric,
        epochs=3,
        history=history,
        checkpoint=f"/runs/{trial_id}/checkpoint_epoch_0003",
        best_epoch=best_epoch,
        best_checkpoint=f"/runs/{trial_id}/best",
        baseline=baseline,
    )


def test_trials_are_ranked_by_their_best_and_only_healthy_ones():
    trials = [
        _trial("low", 18.0),
        _trial("high", 24.0),
        _trial("failed", 99.0, "failed"),
        _trial("diverged", 98.0, "diverged"),
        _trial("nan", float("nan")),
        _trial("none", None),
        _trial("stopped", 20.0, "stopped"),
    ]
    assert pick_best(trials, "max").trial_id == "high"  # psnr: higher is better
    assert pick_best(trials, "min").trial_id == "low"  # cycle_l1: lower is better
    # a trial the scheduler stopped wins when its best is best: its best epoch's generators are kept
    assert (
        pick_best([_trial("finished", 18.0), _trial("stopped", 20.0, "stopped")], "max").trial_id
        == "stopped"
    )
    assert pick_best([_trial("failed", 1.0, "failed"), _trial("nan", float("nan"))], "min") is None


def _task(trials: list[TrialRecord], baseline_id: str | None) -> TaskResult:
    best = pick_best(trials, "max")
    return TaskResult(
        "colorshift",
        "synthetic://colorshift",
        "psnr",
        "max",
        trials,
        best.trial_id if best else None,
        baseline_trial_id=baseline_id,
    )


def test_the_summary_says_by_how_much_the_best_beat_the_baseline():
    beaten = _task([_trial("t0", 16.0, baseline=True), _trial("t1", 18.0, best_epoch=2)], "t0")
    assert beaten.improvement == pytest.approx(2.0)
    table = summary_table(
        [
            beaten,
            _task([_trial("t0", 18.0, baseline=True), _trial("t1", 17.0)], "t0"),
            _task([_trial("t0", None, "diverged", baseline=True), _trial("t1", 17.0)], "t0"),
        ]
    )
    lines = table.splitlines()
    assert "vs baseline" in lines[0] and "metric [95% interval] (best epoch)" in lines[0]
    assert (
        "t1 " in lines[2]
        and "psnr=18 @ epoch 2 (max)" in lines[2]
        and "beat it by 2 (12%)" in lines[2]
    )
    assert "t0* " in lines[3] and "the baseline is best" in lines[3]
    assert "baseline diverged, no value" in lines[4]
    assert lines[5].startswith("* the baseline")
    # The manifest's alias, as searched, and the names MLflow records it under.
    assert lines[6] == (
        "hyperparameters as searched: lambda_cyc sets lambda_A and lambda_B (the names MLflow "
        "and the registry record)"
    )


def test_the_summary_shows_intervals_the_untranslated_reference_and_the_noise():
    best = _trial("t1", 14.06)
    best.metric_ci = [13.52, 14.61]
    beaten = _task([_trial("t0", 13.9, baseline=True), best], "t0")
    beaten.untranslated = {"value": 12.2, "ci": [11.9, 12.5], "protocol": "res=32"}
    beaten.over_untranslated = [1.86, 1.3, 2.4]
    beaten.over_baseline = [0.16, -0.1, 0.45]  # image by image: within the noise
    lost = _task([_trial("t0", 14.0, baseline=True)], "t0")
    lost.untranslated = {"value": 16.32, "ci": [15.8, 16.9], "protocol": "res=32"}
    lost.over_untranslated = [-2.26, -2.9, -1.7]
    assert beaten.beats_untranslated and lost.beats_untranslated is False
    lines = summary_table([beaten, lost]).splitlines()
    assert "vs untranslated" in lines[0]
    assert "psnr=14.06 [13.52, 14.61] @ epoch 2 (max)" in lines[2]
    assert "+1.86 [+1.3, +2.4] over 12.2" in lines[2]
    assert "within the noise: +0.16 [-0.1, +0.45]" in lines[2]
    assert "worse: -2.26 [-2.9, -1.7] over 16.32" in lines[3]
    assert (
        "colorshift: no trial beat the untranslated inputs beyond the noise (psnr 16.32); "
        "champion not moved to it"
    ) in lines


def test_a_results_file_reads_back_as_objects(tmp_path):
    task = _task(
        [_trial("t0", 16.0, baseline=True), _trial("t1", 18.0), _trial("t2", 12.0, "stopped")], "t0"
    )
    task.stopped = "the task's time budget of 60 s ran out"
    path = write_results(
        [task],
        "quickstart",
        "experiments/quickstart.yaml",
        "ab" * 32,
        "./runs",
        tmp_path / "quickstart.json",
    )
    assert json.loads(path.read_text())["tasks"][0]["best_epoch"] == 2  # the raw file says it too

    results = load_results(path)
    assert results.experiment == "quickstart" and [t.task for t in results] == ["colorshift"]
    found = results["colorshift"]
    assert found.best.trial_id == "t1" and found.best.best_epoch == 2 and found.best.metric == 18.0
    assert (
        found.baseline.trial_id == "t0"
        and found.improvement == pytest.approx(2.0)
        and found.stopped == task.stopped
    )
    assert found.history("t1")[1] == {"epoch": 2, "psnr": 18.0} and set(found.histories) == {
        "t0",
        "t1",
        "t2",
    }
    frame = found.history_frame()
    assert len(frame) == 9 and frame[frame.baseline].trial_id.unique().tolist() == ["t0"]
    with pytest.raises(KeyError, match="no task 'nope'"):
        results["nope"]
    with pytest.raises(UserError, match="no results file"):
        load_results(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UserError, match="not a results file"):
        load_results(tmp_path / "bad.json")


def _pbt_baseline(history: list[tuple[int, float]], exploits: list[tuple[int, int]]) -> TrialRecord:
    """A PBT baseline trial (psnr per epoch in `history`) that took a donor's checkpoint at each of
    `exploits` (epoch trained next, donor epoch), in the lineage format of
    orchestrator.trial.pbt_session."""
    trial = _trial("t0", max(v for _, v in history), baseline=True)
    trial.history = [{"epoch": e, "psnr": v, "hp/lambda_A": 10.0} for e, v in history]
    trial.best_epoch = max(history, key=lambda row: row[1])[0]
    trial.lineage = {
        "exploits": [
            {
                "epoch": epoch,
                "donor": "t1",
                "donor_epoch": donor_epoch,
                "old": {"lambda_cyc": 10},
                "new": {"lambda_cyc": 20},
                "checkpoint": f"/runs/pbt-t1/checkpoint_epoch_{donor_epoch:04d}",
            }
            for epoch, donor_epoch in exploits
        ],
        "schedule": [{"trial": "t0", "from_epoch": 1, "values": {"lambda_cyc": 10}}],
    }
    return trial


def test_a_baseline_mutated_by_pbt_is_compared_by_its_value_before_and_loses_its_mark():
    # the paper's values scored 12 by epoch 2; after the exploit at epoch 3 the trial reached 20
    mutated = _pbt_baseline([(1, 11.0), (2, 12.0), (3, 18.0), (4, 20.0)], [(3, 2)])
    task = _task([mutated, _trial("t1", 16.0)], "t0")
    assert task.best is mutated and task.baseline_mutated_at == 3
    assert task.baseline_value == 12.0 and task.improvement == 8.0
    row = summary_table([task]).splitlines()[2]
    assert row.startswith("colorshift  t0 ") and "t0*" not in row
    assert (
        "the baseline trial was mutated at epoch 3; compared with its value before: beat it by 8 "
        "(67%)" in row
    )
    other = _task([mutated, _trial("t1", 24.0)], "t0")  # another trial wins: by 24 - 12
    assert other.improvement == 12.0 and "beat it by 12 (100%)" in summary_table([other])
    assert json.loads(json.dumps(other.to_dict()))["improvement_over_baseline"] == 12.0


def test_a_pbt_baseline_best_before_its_first_exploit_is_still_best():
    # a later exploit went back to epoch 2: the rows from epoch 2 on are the donors' lineage
    best_early = _pbt_baseline([(1, 21.0), (2, 13.0), (3, 20.0), (4, 14.0)], [(4, 3), (2, 1)])
    task = _task([best_early, _trial("t1", 16.0)], "t0")
    assert task.baseline_mutated_at == 2 and task.baseline_value == 21.0
    row = summary_table([task]).splitlines()[2]
    assert "t0*" not in row
    assert (
        "the baseline trial was mutated at epoch 2; compared with its value before: the baseline "
        "is best" in row
    )


def test_a_pbt_baseline_that_never_exploited_keeps_its_mark():
    kept = _pbt_baseline([(1, 11.0), (2, 22.0)], [])
    task = _task([kept, _trial("t1", 16.0)], "t0")
    assert task.baseline_mutated_at is None and task.baseline_value == 22.0
    row = summary_table([task]).splitlines()[2]
    assert "t0* " in row and "the baseline is best" in row and "mutated" not in row
