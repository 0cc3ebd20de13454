"""The README's main job, end to end, as `make demo` runs it: `python -m orchestrator run
experiments/quickstart.yaml` in a fresh working directory (a copy of experiments/, its own HOME so
that nothing of the user's ~/.ray or caches is read or written, Ray as it ships: token auth on).

Whatever tasks the manifest lists: every trial succeeds at its first attempt (Tune counts no
failure for it), runs a configuration of its own, and every task registers a champion that beats
the untranslated test images by at least 1 dB beyond the noise; the terminal output holds no
traceback and stays within LINE_BUDGET lines (README.md, "The two commands"). The rest goes to the
run's log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import tune_failures
from orchestrator.config.plan import load_manifest

REPO = Path(__file__).resolve().parents[2]
# What a user reads: the start, the progress blocks (one line per task each), one line per ended
# trial, the summary table, the champions, where the results and logs are. About 40-70 lines for
# the quickstart's tasks; Ray's and Tune's own output used to make it 250-700.
LINE_BUDGET = 150

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _user_env(home: Path, ray_tmp: Path) -> dict[str, str]:
    """A new user's shell: nothing pointing Ray, MLflow or S3 elsewhere, the code of this
    checkout."""
    drop = ("AWS_", "MLFLOW_", "RAY_", "TUNE_", "CYCLEGAN_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(HOME=str(home), PYTHONPATH=str(REPO), RAY_TMPDIR=str(ray_tmp), PYTHONUNBUFFERED="1")
    return env


def test_the_quickstart_runs_clean_every_trial_at_its_first_attempt(tmp_path):
    work = tmp_path / "work"
    shutil.copytree(REPO / "experiments", work / "experiments")
    (tmp_path / "home").mkdir()
    ray_tmp = Path(
        tempfile.mkdtemp(prefix="demo-", dir="/tmp")
    )  # short: Ray's socket paths must fit
    try:
        run = subprocess.run(
            [sys.executable, "-m", "orchestrator", "run", "experiments/quickstart.yaml"],
            cwd=work,
            env=_user_env(tmp_path / "home", ray_tmp),
            capture_output=True,
            text=True,
            timeout=1400,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-8000:]
    assert "Traceback" not in output, output
    lines = output.splitlines()
    assert len(lines) <= LINE_BUDGET, f"{len(lines)} lines (budget {LINE_BUDGET}):\n{output}"

    loaded = load_manifest(work / "experiments" / "quickstart.yaml")
    experiment = loaded.manifest.name
    results = json.loads((work / "results" / f"{experiment}.json").read_text())
    by_task = {task["task"]: task for task in results["tasks"]}
    assert set(by_task) == {plan.name for plan in loaded.plans}
    for plan in loaded.plans:
        trials = by_task[plan.name]["trials"]
        assert len(trials) == plan.trial_count, trials
        assert {t["status"] for t in trials} <= {"finished", "stopped"}, [
            (t["trial_id"], t["status"], t["error"]) for t in trials
        ]
        failures = tune_failures(work / "runs", experiment, plan.name)
        assert failures == {t["trial_id"]: 0 for t in trials}, (
            f"{plan.name}: trials retried after a failure: {failures}"
        )
        assert f"registry: cyclegan-{plan.name} v1" in output
        # No configuration twice (the baseline's point included), and a champion worth having:
        # beyond the noise, and by at least 1 dB, better than the untranslated test images.
        configs = {json.dumps(t["params"], sort_keys=True) for t in trials}
        assert len(configs) == len(trials), trials
        task = by_task[plan.name]
        gain, low, _ = task["over_untranslated"]
        assert low > 0 and gain >= 1.0, (plan.name, task["over_untranslated"], task["untranslated"])
        assert task["registry"]["champion"], task["registry"]
        ended = [line for line in lines if line.startswith(f"  {plan.name}: trial ")]
        assert len(ended) == plan.trial_count, ended  # one line per finished or stopped trial
    assert (
        "best trial" in output and "vs baseline" in output
    )  # the summary table, against the paper's setting
    assert output.count(", the baseline)") == len(
        loaded.plans
    )  # each task's baseline trial, marked in its line
    log = work / "results" / f"{experiment}.log"
    assert f"this run's log: results/{experiment}.log" in output and log.stat().st_size > 0
    assert "Ray's logs: " in output
