"""The model registry against a real `mlflow server`: champion logic, lookups, and the registered
generators translating exactly like the checkpoint (CLI, pyfunc, `mlflow models serve`)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

from conftest import _stop_process_group, free_port, wait_for_http
from cyclegan.checkpoint import load_generator, save_networks
from cyclegan.config import TrainConfig
from cyclegan.data import load_image
from cyclegan.networks import define_networks
from cyclegan.scores import Scores
from cyclegan.translate import translate_image
from orchestrator.commands import main as orchestrator_main
from orchestrator.tracking.context import TrackingContext
from orchestrator.tracking.mlflow_recorder import MlflowTrialRecorder
from orchestrator.tracking.models import show_model
from orchestrator.tracking.registry import Candidate, register_best
from orchestrator.tracking.runs import TaskRunSpec, get_or_create_experiment, start_task_run

DATASET = "synthetic://colorshift"


@pytest.fixture(scope="module")
def registry(mlflow_server, tiny_trained, tmp_path_factory) -> dict:
    """Three trials of task `zebra` (psnr, max) registered in turn: 12.0 (first), 11.0 (worse),
    13.0 (better, other weights); and two of task `maps` (fid, min): 50 (first), 60 (worse)."""
    uri = mlflow_server
    config = json.loads((tiny_trained / "config.json").read_text())
    other = tmp_path_factory.mktemp("other-trial")  # a second trial's generators: different weights
    torch.manual_seed(1)
    save_networks(other, "latest", define_networks(TrainConfig.from_dict(config)))
    exp = get_or_create_experiment(uri, "registry-test")
    parent = start_task_run(
        uri,
        exp,
        TaskRunSpec(
            "zebra",
            dataset=DATASET,
            manifest_name="m",
            manifest_sha256="0",
            metric="psnr",
            mode="max",
        ),
    )
    runs = []
    for i, folder in enumerate((tiny_trained, tiny_trained, other)):
        with MlflowTrialRecorder(
            TrackingContext(uri, exp, parent, trial=f"trial_{i}"),
            params={**config, "lr": 1e-4 * (i + 1)},
        ) as logger:
            logger.log_checkpoint(
                folder,
                "best",
                epoch=2,
                config=config,
                files=("latest_net_G_A.pth", "latest_net_G_B.pth"),
            )
        runs.append(logger.run_id)

    def register(task, run, value, metric="psnr", mode="max", **kwargs):
        return register_best(
            uri,
            Candidate(
                task,
                run,
                metric=metric,
                value=value,
                mode=mode,
                dataset=DATASET,
                hyperparameters={"lr": 1e-4, "lambda_A": 10.0, "lambda_B": 10.0},
                **kwargs,
            ),
            promote="better",  # no per-image evidence here: the values decide
        )

    zebra = [
        register("zebra", runs[0], 12.0),  # checkpoint and config from the run's artifacts
        register("zebra", runs[1], 11.0, checkpoint_dir=tiny_trained, config=config),
        register("zebra", runs[2], 13.0),
    ]
    maps = [
        register("maps", runs[0], 50.0, "fid", "min"),
        register("maps", runs[1], 60.0, "fid", "min"),
    ]
    return {
        "uri": uri,
        "zebra": zebra,
        "maps": maps,
        "runs": runs,
        "champion_dir": other,
        "first_dir": tiny_trained,
    }


def direct(folder: Path, direction: str, images: list[Path]) -> dict[str, np.ndarray]:
    """What the checkpoint's generator itself makes of each image."""
    net = load_generator(folder / f"latest_net_G_{'A' if direction == 'AtoB' else 'B'}.pth")
    return {
        p.name: np.asarray(translate_image(net, load_image(p, 3), 4), dtype=np.int16)
        for p in images
    }


def decode(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"), dtype=np.int16)


def assert_same_images(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name].shape == expected[name].shape, name
        assert np.abs(got[name] - expected[name]).max() <= 1, (
            name
        )  # within 1/255; in practice bit-equal


def as_frame(images: list[Path]) -> pd.DataFrame:
    return pd.DataFrame({"image": [base64.b64encode(p.read_bytes()).decode() for p in images]})


def test_champion_moves_only_to_a_strictly_better_version(registry):
    first, worse, better = registry["zebra"]
    assert (first.version, first.champion, first.reason) == ("1", True, "promoted: first champion")
    assert (worse.version, worse.champion, worse.previous_champion) == ("2", False, "1")
    assert "not champion" in worse.summary() and "psnr=12" in worse.reason
    assert (better.version, better.champion, better.previous_champion, better.previous_value) == (
        "3",
        True,
        "1",
        12.0,
    )
    info = show_model(registry["uri"], "zebra")
    assert info.champion.version == "3" and [v.version for v in info.versions] == ["3", "2", "1"]
    assert info.champion.run_id == registry["runs"][2] and info.champion.dataset == DATASET
    assert info.champion.hyperparameters == {"lr": "0.0001", "lambda_A": "10", "lambda_B": "10"}
    assert (
        info.versions[1].aliases == []
        and info.versions[1].metric == "psnr"
        and info.versions[1].value == 11.0
    )


def test_lower_is_better_for_min_metrics(registry):
    first, worse = registry["maps"]
    assert first.champion and not worse.champion and worse.version == "2"
    assert show_model(registry["uri"], "cyclegan-maps").champion.version == "1"


def test_models_list_and_show_print_compact_tables(registry, capsys):
    uri = registry["uri"]
    assert orchestrator_main(["models", "list", "--tracking-uri", uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "MODEL",
        "CHAMPION",
        "METRIC",
        "VALUE",
        "DATASET",
        "REGISTERED",
        "LATEST",
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert (
        rows["cyclegan-zebra"][1:5] == ["v3", "psnr", "13", DATASET]
        and rows["cyclegan-zebra"][-1] == "v3"
    )
    assert (
        rows["cyclegan-maps"][1:5] == ["v1", "fid", "50", DATASET]
        and rows["cyclegan-maps"][-1] == "v2"
    )
    assert orchestrator_main(["models", "show", "zebra", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("champion: v3  psnr=13 (max)")
    assert [line.split()[:2] for line in out.splitlines()[3:]] == [
        ["v3", "champion"],
        ["v2", "-"],
        ["v1", "-"],
    ]
    assert "lambda_A=10 lambda_B=10 lr=0.0001" in out


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_translate_with_the_registered_champion_equals_the_checkpoint(
    registry, tiny_dataset, tmp_path, direction, ray_session
):
    images = sorted((tiny_dataset / f"test{direction[0]}").glob("*.png"))
    code = orchestrator_main(
        [
            "translate",
            "--model",
            "models:/cyclegan-zebra@champion",
            "--direction",
            direction,
            "--input",
            str(tiny_dataset / f"test{direction[0]}"),
            "--output",
            str(tmp_path / "out"),
            "--tracking-uri",
            registry["uri"],
        ]
    )
    assert code == 0
    got = {
        p.name: np.asarray(Image.open(p), dtype=np.int16)
        for p in sorted((tmp_path / "out").glob("*.png"))
    }
    assert_same_images(got, direct(registry["champion_dir"], direction, images))


def test_translate_reads_s3_input(
    registry, tiny_dataset, tmp_path, s3_env, monkeypatch, ray_session
):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="translate-inputs")
    images = sorted((tiny_dataset / "testA").glob("*.png"))
    for p in images:
        s3.upload_file(str(p), "translate-inputs", f"horses/{p.name}")
    code = orchestrator_main(
        [
            "translate",
            "--model",
            "models:/cyclegan-zebra/1",
            "--input",
            "s3://translate-inputs/horses",
            "--output",
            str(tmp_path / "out"),
            "--tracking-uri",
            registry["uri"],
        ]
    )
    assert code == 0
    got = {
        p.name: np.asarray(Image.open(p), dtype=np.int16)
        for p in sorted((tmp_path / "out").glob("*.png"))
    }
    assert_same_images(got, direct(registry["first_dir"], "AtoB", images))


def test_pyfunc_predict_from_plain_mlflow_equals_the_checkpoint(
    registry, tiny_dataset, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    model = mlflow.pyfunc.load_model("models:/cyclegan-zebra@champion")
    assert model.metadata.signature.params.params[0].name == "direction"
    images = sorted((tiny_dataset / "testB").glob("*.png"))
    out = model.predict(as_frame(images), params={"direction": "BtoA"})
    assert list(out.columns) == ["image"]
    got = {p.name: decode(text) for p, text in zip(images, out["image"])}
    assert_same_images(got, direct(registry["champion_dir"], "BtoA", images))


def test_mlflow_models_serve_answers_with_translated_images(registry, tiny_dataset, tmp_path):
    """The README's serve command, from a shell where the virtual environment is not activated
    (its bin folder, with `uvicorn`, not on PATH): it answers with the champion's translations."""
    port = free_port()
    log_file = tmp_path / "serve.log"
    venv_bin = str(Path(sys.executable).parent)
    fresh_path = os.pathsep.join(
        p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p != venv_bin
    )
    assert shutil.which("uvicorn", path=fresh_path) is None  # else this proves nothing
    env = {**os.environ, "PATH": fresh_path}
    env.pop("VIRTUAL_ENV", None)
    command = [
        sys.executable,
        "-m",
        "orchestrator",
        "models",
        "serve",
        "zebra",
        "--tracking-uri",
        registry["uri"],
        "-p",
        str(port),
    ]
    with open(log_file, "w") as log:
        proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", proc, log_file, timeout=180)
        images = sorted((tiny_dataset / "testA").glob("*.png"))
        body = {
            "dataframe_split": as_frame(images).to_dict(orient="split"),
            "params": {"direction": "AtoB"},
        }
        body["dataframe_split"].pop("index", None)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = json.loads(response.read())["predictions"]
        got = {p.name: decode(row["image"]) for p, row in zip(images, predictions)}
        assert_same_images(got, direct(registry["champion_dir"], "AtoB", images))
    finally:
        _stop_process_group(proc)


def _with_evidence(source: Path, dest: Path, shift: float, protocol: str | None = None) -> Path:
    """A copy of the trained folder whose evidence says: PSNR = the untranslated inputs' + `shift`
    dB on every test image, give or take 0.1 dB."""
    shutil.copytree(source, dest)
    nothing = Scores.load(source / "untranslated.npz")
    mine = Scores.load(source / "evaluation.npz")
    rng = np.random.default_rng(int(shift * 1000) % 2**32)  # each model its own per-image noise
    spread = {k: (e := rng.normal(0, 0.1, len(v))) - e.mean() for k, v in nothing.paired.items()}
    mine.paired = {k: v + shift + spread[k] for k, v in nothing.paired.items() if "psnr" in k}
    nothing.paired = {k: v for k, v in nothing.paired.items() if "psnr" in k}
    if protocol:
        mine.protocol = nothing.protocol = protocol
    mine.save(dest / "evaluation.npz")
    nothing.save(dest / "untranslated.npz")
    return dest


def test_promotion_on_evidence_against_a_real_registry(registry, tiny_trained, tmp_path, capsys):
    """The champion moves only beyond the noise (significant), on any gain (better), never to a
    model worse than doing nothing; a champion scored under another protocol is evaluated again."""
    uri, run = registry["uri"], registry["runs"][0]
    base = Scores.load(tiny_trained / "untranslated.npz").value("psnr")

    def register(shift: float, promote: str, protocol: str | None = None, reevaluate=None):
        folder = _with_evidence(tiny_trained, tmp_path / f"{shift}-{promote}-{protocol}", shift)
        if protocol:
            _with_evidence(tiny_trained, folder.with_name(folder.name + "-p"), shift, protocol)
            folder = folder.with_name(folder.name + "-p")
        candidate = Candidate("horse", run, "psnr", base + shift, "max", checkpoint_dir=folder)
        return register_best(uri, candidate, promote=promote, reevaluate=reevaluate)

    first = register(2.0, "significant")
    assert first.champion and first.reason.startswith("promoted: first champion; beats the")
    assert first.interval[0] < first.value < first.interval[1]
    assert first.over_untranslated.estimate == pytest.approx(2.0)
    tiny = register(2.01, "significant")  # +0.01 dB over v1: within the noise
    assert not tiny.champion and tiny.improvement.low < 0 < tiny.improvement.high
    assert "over v1 is within the noise (promote: significant)" in tiny.reason
    assert register(2.01, "better").champion  # today's rule: any gain
    worse = register(-0.5, "always")  # worse than the untranslated test images
    assert not worse.champion and "untranslated inputs is no improvement" in worse.reason

    asked = []

    def reevaluate(version: str) -> Scores:
        asked.append(version)
        folder = _with_evidence(tiny_trained, tmp_path / f"again-{version}", 2.01, "res=other")
        return Scores.load(folder / "evaluation.npz")

    moved = register(3.0, "significant", protocol="res=other", reevaluate=reevaluate)
    assert asked == ["3"] and moved.champion  # v3 (better) held the alias
    assert moved.improvement.estimate == pytest.approx(0.99)

    client = MlflowClient(uri, registry_uri=uri)
    tags = client.get_model_version("cyclegan-horse", moved.version).tags
    assert tags["protocol"] == "res=other"
    assert (
        float(tags["metric_ci_low"]) < float(tags["metric_value"]) < float(tags["metric_ci_high"])
    )
    assert float(tags["improvement_ci_low"]) > 0 and tags["champion_decision"] == moved.reason
    assert float(tags["untranslated_value"]) == pytest.approx(base)
    description = client.get_model_version("cyclegan-horse", moved.version).description
    assert "[95% interval " in description and "The untranslated test images score " in description
    assert description.endswith("Evaluation protocol: res=other.")
    noisy = client.get_model_version("cyclegan-horse", tiny.version).tags
    assert float(noisy["improvement_ci_low"]) < 0 < float(noisy["improvement_ci_high"])

    assert orchestrator_main(["models", "show", "horse", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith(f"champion: v{moved.version}  psnr={moved.value:.4g} [")
    assert out[2].strip().startswith("untranslated test images: psnr=") and "res=other" in out[3]
