"""`python -m cyclegan evaluate` on a tiny trained checkpoint, and `train --eval_freq`."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from conftest import load_image_tensor, random_inception_file, tiny_config
from cyclegan import metrics as M
from cyclegan.checkpoint import load_generator
from cyclegan.commands import main
from cyclegan.commands.runner import run_cli
from cyclegan.errors import UserError
from cyclegan.scores import Scores
from cyclegan.sources.synthetic import generate
from cyclegan.trainer import Trainer
from cyclegan.translate import translate_folder


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return random_inception_file(tmp_path_factory)


@pytest.fixture
def env(weights_file, monkeypatch, tmp_path):
    """The (random) Inception weights through $CYCLEGAN_INCEPTION_WEIGHTS, private caches,
    offline."""
    monkeypatch.setenv(M.WEIGHTS_ENV, str(weights_file))
    monkeypatch.setenv("CYCLEGAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CYCLEGAN_FEATURE_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(M.OFFLINE_ENV, "1")
    return monkeypatch


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    Trainer(tiny_config(tiny_dataset, out, n_epochs=1, n_epochs_decay=0), show_progress=False).fit()
    return out / "tiny"


def test_evaluate_prints_a_table_and_writes_json(trained, tiny_dataset, env, tmp_path, capsys):
    out_json = tmp_path / "eval" / "result.json"
    argv = [
        "evaluate",
        "--checkpoint_dir",
        str(trained),
        "--dataroot",
        str(tiny_dataset),
        "--metrics",
        "fid,kid,psnr,ssim,l1",
        "--json",
        str(out_json),
        "--no_progress",
        "--batch_size",
        "3",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "combined" in printed and all(
        f"\n{name} " in printed for name in ("fid", "kid", "psnr", "ssim", "l1")
    )
    assert "0 from the cache, 2 computed" in printed

    result = json.loads(out_json.read_text())
    values = result["metrics"]
    for name in ("fid", "kid", "psnr", "ssim", "l1"):
        for d in ("AtoB", "BtoA"):
            assert math.isfinite(values[f"{name}_{d}"])
        assert values[name] == pytest.approx((values[f"{name}_AtoB"] + values[f"{name}_BtoA"]) / 2)
    assert values["fid"] > 0 and 0 < values["l1"] < 1 and values["eval_time_s"] > 0
    assert result["n_images"] == {"AtoB": 4, "BtoA": 4} and result["unavailable"] == {}

    # The numbers are those of the images `translate` writes: check A->B PSNR and L1 from the PNGs.
    G_A = load_generator(trained / "latest_net_G_A.pth")
    written = translate_folder(G_A, tiny_dataset / "testA", tmp_path / "fakeB", show_progress=False)
    fakes = [load_image_tensor(p) for p in written]
    truths = [load_image_tensor(tiny_dataset / "testA_gt" / p.name) for p in written]
    expected = M.paired_metrics(torch.stack(fakes), torch.stack(truths), ["psnr", "l1"])
    # (batched vs. one-by-one convolutions may round a few pixels the other way: hence 1e-4, not
    # 1e-9)
    assert values["psnr_AtoB"] == pytest.approx(expected["psnr"], rel=1e-4)
    assert values["l1_AtoB"] == pytest.approx(expected["l1"], rel=1e-4)


def test_evaluate_untranslated_scores_the_test_images_as_they_are(
    trained, tiny_dataset, env, tmp_path, capsys
):
    out_json = tmp_path / "result.json"
    argv = [
        "evaluate",
        "--checkpoint_dir",
        str(trained),
        "--dataroot",
        str(tiny_dataset),
        "--metrics",
        "psnr,l1",
        "--untranslated",
        "--json",
        str(out_json),
        "--no_progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "\nuntranslated (each test image scored as its own translation: the baseline)\nmetric "
        in printed
    )
    result = json.loads(out_json.read_text())
    for d, folder in (("AtoB", "testA"), ("BtoA", "testB")):
        names = sorted(p.name for p in (tiny_dataset / folder).iterdir())
        inputs = torch.stack([load_image_tensor(tiny_dataset / folder / n) for n in names])
        truths = torch.stack([load_image_tensor(tiny_dataset / f"{folder}_gt" / n) for n in names])
        expected = M.paired_metrics(inputs, truths, ["psnr", "l1"])
        assert result["untranslated"][f"psnr_{d}"] == pytest.approx(expected["psnr"], rel=1e-6)
        assert result["untranslated"][f"l1_{d}"] == pytest.approx(expected["l1"], rel=1e-6)
        assert result["metrics"][f"psnr_{d}"] != result["untranslated"][f"psnr_{d}"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_weights", M.INCEPTION_FILE),
        ("no_checkpoint", "no latest_net_G_A.pth there"),
        ("paired_only_without_gt", "--metrics psnr: "),
        ("bad_metric", "--metrics: unknown metric(s) fdi"),
    ],
)
def test_evaluate_errors_are_one_clear_line(
    case, message, trained, tiny_dataset, env, tmp_path, capsys
):
    dataroot, metrics, checkpoint_dir = tiny_dataset, "fid,psnr", trained
    if case == "no_weights":
        env.delenv(M.WEIGHTS_ENV)
    elif case == "no_checkpoint":
        checkpoint_dir = tmp_path
    elif case == "paired_only_without_gt":
        dataroot, metrics = (
            generate("colorshift", tmp_path / "real", n_train=1, n_test=2, size=32),
            "psnr",
        )
        for folder in ("testA_gt", "testB_gt"):
            for f in (dataroot / folder).iterdir():
                f.unlink()
            (dataroot / folder).rmdir()
    else:
        metrics = "fdi"
    argv = [
        "evaluate",
        "--checkpoint_dir",
        str(checkpoint_dir),
        "--dataroot",
        str(dataroot),
        "--metrics",
        metrics,
        "--no_progress",
    ]
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_train_eval_freq_logs_metrics_and_reuses_real_features(tmp_path, env, caplog):
    data = generate("colorshift", tmp_path / "data", n_train=3, n_test=2, size=32, seed=1)
    argv = [
        "train",
        "--dataroot",
        str(data),
        "--checkpoints_dir",
        str(tmp_path),
        "--name",
        "cli",
        "--netG",
        "resnet_2blocks",
        "--ngf",
        "8",
        "--ndf",
        "8",
        "--load_size",
        "32",
        "--crop_size",
        "32",
        "--n_epochs",
        "2",
        "--n_epochs_decay",
        "1",
        "--num_threads",
        "0",
        "--device",
        "cpu",
        "--eval_freq",
        "2",
        "--eval_metrics",
        "fid,psnr,l1",
    ]
    with caplog.at_level(logging.INFO, logger="cyclegan.evaluate"):
        assert main(argv) == 0

    lines = [json.loads(x) for x in (tmp_path / "cli" / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3]
    assert "fid" not in lines[0]  # every 2nd epoch, and the last one
    for line in lines[1:]:
        for key in (
            "fid",
            "fid_AtoB",
            "fid_BtoA",
            "psnr",
            "psnr_AtoB",
            "l1",
            "eval_time_s",
            "epoch_time_s",
            "loss_G",
        ):
            assert math.isfinite(line[key]), key
        assert line["fid"] > 0 and 0 < line["l1"] < 1 and line["eval_time_s"] > 0
    log = (tmp_path / "cli" / "loss_log.txt").read_text()
    assert (
        "(epoch: 2, evaluation) " in log
        and "(epoch: 3, evaluation) " in log
        and "fid_AtoB: " in log
    )
    # Real-set features were extracted once, for the untranslated reference (whose translations
    # are the other side's real images), and reused by both evaluations.
    reports = [r.getMessage() for r in caplog.records if "real-set features" in r.getMessage()]
    assert len(reports) == 3
    assert reports[0].endswith("2 from the cache, 2 computed")
    assert all(r.endswith("2 from the cache, 0 computed") for r in reports[1:])
    # Each evaluation keeps its evidence and intervals; the reference is scored once.
    assert "(epoch: 2, untranslated) " in log and log.count(", untranslated) ") == 1
    for line in lines[1:]:
        assert line["psnr_ci_low"] < line["psnr"] < line["psnr_ci_high"]
        assert line["fid_AtoB_ci_low"] <= line["fid_AtoB"] <= line["fid_AtoB_ci_high"]
    evidence = Scores.load(tmp_path / "cli" / "evaluation.npz")
    reference = Scores.load(tmp_path / "cli" / "untranslated.npz")
    assert evidence.value("psnr") == pytest.approx(lines[-1]["psnr"])
    assert evidence.protocol == reference.protocol == lines[-1]["eval_protocol"]
    assert evidence.compare(reference, "psnr").estimate == pytest.approx(
        lines[-1]["psnr"] - reference.value("psnr")
    )


def test_train_with_fid_but_no_weights_fails_before_training(tiny_dataset, env, tmp_path):
    env.delenv(M.WEIGHTS_ENV)
    with pytest.raises(M.MissingWeightsError, match=M.INCEPTION_FILE):
        Trainer(tiny_config(tiny_dataset, tmp_path, eval_freq=1, eval_metrics="fid"))
    assert not (tmp_path / "tiny" / "metrics.jsonl").exists()
    assert issubclass(M.MissingWeightsError, UserError)


def test_a_champion_evaluated_again_in_a_worker_gives_its_trainings_own_evidence(
    tiny_trained, tmp_path
):
    """orchestrator.trial.reevaluate (the Ray task behind a champion's re-evaluation), called as
    the task would be: the generators' bytes, the challenger's config; same protocol, same
    numbers as the training's last evaluation of those generators."""
    from orchestrator.tracking.pyfunc_model import generator_config
    from orchestrator.trial.reevaluate import evaluate_generators

    config = json.loads((tiny_trained / "config.json").read_text())
    generators = {n: (tiny_trained / f"latest_net_{n}.pth").read_bytes() for n in ("G_A", "G_B")}
    data = evaluate_generators(config, generators, generator_config(config))
    (tmp_path / "again.npz").write_bytes(data)
    again = Scores.load(tmp_path / "again.npz")
    kept = Scores.load(tiny_trained / "evaluation.npz")
    assert again.comparable(kept) is None and again.protocol == kept.protocol
    for key, values in kept.paired.items():
        assert again.paired[key] == pytest.approx(values, abs=1e-6), key


def test_evaluate_gives_clean_fid_and_names_the_missing_structure_weights(
    trained, tiny_dataset, env, tmp_path, capsys
):
    argv = ["evaluate", "--checkpoint_dir", str(trained), "--dataroot", str(tiny_dataset)]
    argv += ["--no_progress", "--json", str(tmp_path / "out.json"), "--metrics"]
    assert main([*argv, "fid,fid_clean,kid_clean"]) == 0
    printed = capsys.readouterr().out
    assert "\nfid_clean " in printed and "\nkid_clean " in printed
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["metrics"]["fid_clean"] > 0 and "fid_clean_ci_low" in result["metrics"]
    assert f"clean={M.CLEAN_RESIZE}@299" in result["protocol"]

    missing = tmp_path / "dino.pth"
    assert run_cli(main, [*argv, "dino_struct", "--structure_weights", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --structure_weights ") and str(missing) in err
    assert "dino_vitbase8_pretrain.pth" in err and "Traceback" not in err
