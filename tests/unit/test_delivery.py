"""A task's `deliver:` without Ray: the manifest's checks, the checks before anything trains, and
what the job's last step decides and records (the translation itself replaced)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from orchestrator.config.plan import parse_manifest
from orchestrator.config.problems import ManifestError
from orchestrator.sweep import delivery
from orchestrator.sweep.delivery import check_deliveries, deliver_champions, delivery_line
from orchestrator.sweep.results import TaskResult


def _manifest(*delivers: str) -> str:
    tasks = "".join(
        f"  - name: t{i}\n    data: synthetic://colorshift\n    deliver: {d}\n"
        for i, d in enumerate(delivers)
    )
    return f"name: deliveries\ntasks:\n{tasks}"


def _problems(text: str) -> str:
    with pytest.raises(ManifestError) as err:
        parse_manifest(text)
    return str(err.value)


def test_the_manifest_takes_a_delivery_with_the_translate_commands_defaults():
    plan = parse_manifest(_manifest("{input: s3://b/photos/, output: s3://b/out/, workers: 1-4}"))
    spec = plan.plans[0].deliver
    assert (spec.input, spec.output, spec.workers) == ("s3://b/photos/", "s3://b/out/", "1-4")
    assert (spec.direction, spec.format, spec.batch_size, spec.gpus_per_worker) == (
        "AtoB",
        "png",
        16,
        0.0,
    )
    assert (
        parse_manifest(_manifest("{input: a, output: b, workers: 3}")).plans[0].deliver.workers
        == "3"
    )
    assert parse_manifest(_manifest("{input: a, output: b}")).plans[0].deliver is not None
    no_delivery = parse_manifest("name: x\ntasks:\n  - name: t\n    data: synthetic://colorshift\n")
    assert no_delivery.plans[0].deliver is None


@pytest.mark.parametrize(
    ("deliver", "expected"),
    [
        ("{input: ftp://h/x, output: s3://b/o}", "deliver.input (line 5): 'ftp://h/x': unsupported scheme ftp://"),  # noqa: E501
        ("{input: s3://b/in, output: s3://b/in/out}", "tasks[0].deliver (line 5): output lies inside input"),  # noqa: E501
        ("{input: a, output: b, workers: 4-2}", "deliver.workers (line 5): '4-2': give a number (4) or a range MIN-MAX"),  # noqa: E501
        ("{input: a, output: b, workers: 0}", "give a number (4) or a range MIN-MAX"),
        ("{input: a, output: b, format: gif}", "tasks[0].deliver.format (line 5)"),
        ("{input: a, output: b, direction: AB}", "tasks[0].deliver.direction (line 5)"),
        ("{input: a, output: b, batch_size: 0}", "tasks[0].deliver.batch_size (line 5)"),
        ("{input: a, output: b, outputs: c}", "tasks[0].deliver.outputs (line 5): unknown field"),
        ("{output: b}", "tasks[0].deliver.input (line 5)"),
    ],
)  # fmt: skip
def test_a_bad_delivery_is_refused_naming_its_field(deliver, expected):
    assert expected in _problems(_manifest(deliver))


def _images(folder, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / f"{i}.png")


def test_the_checks_before_anything_trains_name_each_task_and_what_to_fix(tmp_path):
    _images(tmp_path / "in", 2)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no image here")
    text = _manifest(
        f"{{input: {tmp_path}/in, output: {tmp_path}/./in/out}}",  # inside once resolved
        f"{{input: {tmp_path}/missing, output: {tmp_path}/out}}",
        f"{{input: {tmp_path}/empty, output: {tmp_path}/out2}}",
        f"{{input: {tmp_path}/in, output: {tmp_path}/out3}}",  # fine
    )
    plans = parse_manifest(text).plans
    with pytest.raises(ManifestError) as err:
        check_deliveries(plans)
    lines = str(err.value).splitlines()
    assert lines[0] == "3 delivery problem(s):"
    assert lines[1].strip().startswith("tasks[0] (t0): deliver.output ") and "inside" in lines[1]
    assert "tasks[1] (t1): deliver.input " in lines[2] and "not found" in lines[2]
    assert "tasks[2] (t2): deliver.input " in lines[3] and "no image found" in lines[3]
    check_deliveries(plans[3:])  # a good one passes
    assert not (tmp_path / "out3").exists()  # checking writes nothing


def _result(task: str, registry: dict | None) -> TaskResult:
    return TaskResult(task, "synthetic://colorshift", "psnr", "max", [], None, registry=registry)


def test_the_champion_of_the_job_translates_each_delivery_pinned_to_its_version(
    tmp_path, monkeypatch
):
    _images(tmp_path / "in", 1)
    plans = parse_manifest(
        _manifest(
            f"{{input: {tmp_path}/in, output: {tmp_path}/a, direction: BtoA}}",
            f"{{input: {tmp_path}/in, output: {tmp_path}/b}}",
            f"{{input: {tmp_path}/in, output: {tmp_path}/c}}",
            f"{{input: {tmp_path}/in, output: {tmp_path}/d}}",
        )
        + "  - name: t4\n    data: synthetic://colorshift\n"  # no delivery
    ).plans
    results = [
        _result("t0", {"version": "3", "champion": True, "champion_version": "3"}),
        # not promoted: the earlier champion stays and translates (or finds it all done)
        _result("t1", {"version": "4", "champion": False, "champion_version": "2"}),
        _result("t2", {"version": "1", "champion": False, "champion_version": None}),
        _result("t3", {"error": "registration failed: MLflow down"}),
        _result("t4", {"version": "1", "champion": True, "champion_version": "1"}),
    ]
    calls = []

    def fake(plan, model, uri, echo):
        calls.append((plan.name, model, uri, plan.deliver.direction))
        echo("translated 1")
        done = plan.name == "t0"
        return {
            "complete": done,
            "model": {"name": model.split("/")[1], "version": model.rsplit("/", 1)[1]},
            "counts": {"translated": int(done), "already_there": 0, "failed": 1 - int(done)},
            "mlflow_run_id": "r1",
        }

    monkeypatch.setattr(delivery, "_translate", fake)
    lines = []
    incomplete = deliver_champions(results, plans, "sqlite:///m.db", "cg-", lines.append)
    assert calls == [
        ("t0", "models:/cg-t0/3", "sqlite:///m.db", "BtoA"),
        ("t1", "models:/cg-t1/2", "sqlite:///m.db", "AtoB"),
    ]
    assert incomplete == ["t1"]
    assert results[0].delivery == {
        "input": f"{tmp_path}/in",
        "output": f"{tmp_path}/a",
        "direction": "BtoA",
        "complete": True,
        "model": "models:/cg-t0/3",
        "counts": {"translated": 1, "already_there": 0, "failed": 0},
        "report": f"{tmp_path}/a/_translation.json",
        "mlflow_run_id": "r1",
    }
    assert results[2].delivery == {"skipped": "no champion"}
    assert results[3].delivery == {"skipped": "its registration failed"}
    assert results[4].delivery is None
    assert "  translated 1" in lines  # the translation's own lines, indented under the task's
    assert delivery_line(results[0]) == (
        f"task t0: {tmp_path}/a by models:/cg-t0/3: translated 1, already there 0, failed 0"
    )
    assert delivery_line(results[1]).endswith("failed 1 (incomplete)")
    assert delivery_line(results[2]) == "task t2: skipped (no champion)"


def test_a_delivery_that_raises_is_recorded_and_leaves_the_rest_going(tmp_path, monkeypatch):
    plans = parse_manifest(
        _manifest(f"{{input: {tmp_path}/in, output: {tmp_path}/a}}", "{input: x, output: y}")
    ).plans
    results = [_result(f"t{i}", {"version": "1", "champion_version": "1"}) for i in range(2)]

    def fake(plan, model, uri, echo):
        if plan.name == "t0":
            raise ConnectionError("s3://b: reset by peer, key=AKIAABCDEFGHIJKLMNOP")
        model = {"name": "n", "version": "1"}
        return {"complete": True, "model": model, "counts": {}, "mlflow_run_id": "r"}

    monkeypatch.setattr(delivery, "_translate", fake)
    assert deliver_champions(results, plans, "u", "", lambda line: None) == ["t0"]
    assert results[0].delivery["error"].startswith("ConnectionError: s3://b: reset by peer")
    assert "AKIAABCDEFGHIJKLMNOP" not in results[0].delivery["error"]  # masked
    assert results[1].delivery["complete"] is True
    assert delivery_line(results[0]).startswith("task t0: failed (ConnectionError")
