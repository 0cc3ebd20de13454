"""scripts/gpu_check.sh, the one command a GPU machine runs (issue 31), tested here on CPU: its dry
run executes every step's command line at tiny sizes, so that a typo never costs GPU time; a step
that fails or hangs does not stop the next; results are in OUT after each step; OUT never holds
more than the 8 files the device tool brings back."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
STEPS = ["env", "smoke", "fallback", "tests", "bench", "losses", "packing", "ddp", "orchestrator"]
RESULT_FILES = {"results.md", "steps.jsonl", "log.txt", "smoke.json", "bench.json", "losses.json"}
MAX_FILES = 8  # what the device tool brings back from $OUT


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def records(out: Path) -> list[dict]:
    """steps.jsonl's complete lines (the script may be appending the next one)."""
    path = out / "steps.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def new_files_in_tree() -> set[str]:
    """Untracked and ignored paths in the repository, bytecode caches aside."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        line[3:]
        for line in status.splitlines()
        if line[:2] in ("??", "!!") and "__pycache__" not in line
    }


def check_outputs_of(out: Path, record: dict) -> None:
    """When a step's record is in steps.jsonl, its section and its log are in OUT too."""
    assert (
        f"## {record['step']}. {record['name']}: {record['status']}"
        in (out / "results.md").read_text()
    )
    assert f"===== {record['step']}. {record['name']}:" in (out / "log.txt").read_text()
    assert {"results.md", "log.txt"} <= set(record["files"])
    files = list(out.iterdir())
    assert (
        all(f.is_file() for f in files)
        and len(files) <= MAX_FILES
        and {f.name for f in files} <= RESULT_FILES
    )


def test_help_lists_every_step_and_the_limits_fit_in_8_minutes():
    printed = run_script("--help").stdout
    assert all(
        re.search(rf"^\s+{i} {name}\s+\d+ s", printed, re.M) for i, name in enumerate(STEPS, 1)
    )
    text = SCRIPT.read_text()
    limits = dict(
        re.findall(
            r"\[(\w+)\]=(\d+)", re.search(r"^declare -A LIMIT=\((.*)\)$", text, re.M).group(1)
        )
    )
    assert list(limits) == STEPS
    total = int(re.search(r"^TOTAL_LIMIT=(\d+)$", text, re.M).group(1))
    assert (
        sum(int(v) for v in limits.values()) <= total <= 480 - 10
    )  # room for bookkeeping and a killed step's grace


def test_the_gpu_loss_check_names_configurations_the_gpu_benchmark_has():
    """The dry run uses CPU configurations there; the GPU's names are checked here instead."""
    import torch

    from cyclegan.bench import default_configs

    gpu_configs = re.search(r"^\s+LOSS_CONFIGS=(\S+)$", SCRIPT.read_text(), re.M).group(
        1
    )  # the first: the GPU branch
    assert "cpu" not in gpu_configs and set(gpu_configs.split(",")) <= {
        c.kind for c in default_configs(torch.device("cuda"), [1])
    }


@pytest.mark.parametrize(
    "args", [["--bogus", "out"], ["--dry-run", "--only", "nothing", "out"], ["--dry-run"]]
)
def test_bad_arguments_are_refused(tmp_path, args):
    assert run_script(*[str(tmp_path / a) if a == "out" else a for a in args]).returncode == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_finds_nothing():
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_a_hung_step_is_stopped_at_its_limit_and_a_failed_one_recorded(tmp_path):
    out = tmp_path / "out"
    result = run_script(
        "--dry-run",
        "--only",
        "env,fallback",
        str(out),
        GPU_CHECK_INJECT="env=hang,fallback=fail",
        GPU_CHECK_LIMIT_env="1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    env, fallback = records(out)
    assert (env["name"], env["status"], env["rc"], env["limit_s"]) == ("env", "timeout", 124, 1)
    assert env["seconds"] < 10
    assert (fallback["name"], fallback["status"], fallback["rc"]) == ("fallback", "failed", 3)
    assert "injected failure" in fallback["note"]
    for record in (env, fallback):
        check_outputs_of(out, record)
    assert "## 2. smoke" not in (out / "results.md").read_text()  # --only: nothing else ran


@pytest.mark.slow
def test_the_dry_run_runs_every_step_and_writes_its_results_as_it_goes(tmp_path):
    """The whole dry run (4.5 to 6 minutes on 2 shared cores), with one step failing and one
    hanging."""
    out = tmp_path / "out"
    left_in_tree = new_files_in_tree()
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_CHECK_INJECT": "fallback=fail,ddp=hang",
        "GPU_CHECK_LIMIT_ddp": "2",
    }
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), "--dry-run", str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = 0
    while True:
        finished = proc.poll() is not None
        found = records(out)
        for record in found[seen:]:
            check_outputs_of(out, record)
        seen = len(found)
        if finished:
            break
        time.sleep(0.5)
    printed = proc.stdout.read()
    assert proc.returncode == 0, printed

    by_name = {r["name"]: r for r in records(out)}
    assert [r["name"] for r in records(out)] == STEPS
    assert by_name["fallback"]["status"] == "failed" and by_name["ddp"]["status"] == "timeout"
    others = {name: r for name, r in by_name.items() if name not in ("fallback", "ddp")}
    assert all(r["status"] == "ok" for r in others.values()), {
        n: (r["status"], r["note"]) for n, r in others.items()
    }
    # The JSON files come as their steps end: the bench's is there after its step, the loss check's
    # not yet.
    assert "smoke.json" in by_name["smoke"]["files"]
    assert (
        "bench.json" in by_name["bench"]["files"] and "losses.json" not in by_name["bench"]["files"]
    )
    for name in ("smoke", "bench", "losses"):
        assert json.loads((out / f"{name}.json").read_text())["configs"]
    assert "loss_check" in json.loads((out / "losses.json").read_text())
    assert by_name["env"]["results"][0]["torch"]
    packing = {r["k"]: r for r in by_name["packing"]["results"]}
    assert set(packing) == {1, 2} and all(
        r["runs_finished"] == r["k"] and r["aggregate_pairs_per_s"] > 0 for r in packing.values()
    )
    assert (
        "registry: cyclegan-stripes v1" in (out / "log.txt").read_text()
    )  # the orchestrator's run registered its model

    files = {f.name for f in out.iterdir()}
    assert files == RESULT_FILES and len(files) <= MAX_FILES
    assert (tmp_path / "gpu_check_cache" / "datasets").is_dir()  # caches beside OUT, not in it
    assert (
        new_files_in_tree() == left_in_tree
    )  # nothing written into the repository (mlflow.db, runs/, ...)
