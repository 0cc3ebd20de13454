"""The batch translation's pieces that need no Ray: exact sizes, the plan and its ledger, atomic
folder writes, the report's counts, the command's options."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.commands.runner import run_cli
from cyclegan.data import decode_image
from cyclegan.errors import UserError
from cyclegan.networks import build_generator
from cyclegan.translate import padded_side, translate_image
from orchestrator.batch.job import parse_workers
from orchestrator.batch.plan import input_keys, make_plan
from orchestrator.batch.report import Tally, build_report
from orchestrator.batch.stages import (
    COMPILE_AFTER,
    OK,
    UNREADABLE,
    CpuTranslator,
    Translator,
    decode,
    write,
)
from orchestrator.batch.stores import FolderStore, open_store
from orchestrator.commands import main


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    generator = build_generator("resnet_2blocks", 3, 3, 8, "instance", False).eval()
    generator.netG = "resnet_2blocks"
    return generator


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), np.uint8)
    img = Image.fromarray(pixels)
    img = img.convert(mode) if mode != "I;16" else Image.fromarray(pixels[:, :, 0] * np.uint16(257))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(741, 50), (33, 17), (8, 9), (3, 2), (1, 1)])
def test_images_come_back_at_their_exact_size(net, size):
    img = Image.frombytes("RGB", size, bytes(range(256)) * (size[0] * size[1] * 3 // 256 + 1))
    assert translate_image(net, img, 4).size == size  # 741x50 was 740x52 before


def test_padding_reaches_the_generators_multiple_and_smallest_side():
    assert [padded_side(s, 4) for s in (1, 4, 5, 741)] == [4, 4, 8, 744]
    assert padded_side(5, 4, smallest=16) == 16


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16"])
def test_decoded_as_training_loads_them(mode):
    img = decode_image(_png(9, 7, mode), "x.png", 3)
    assert img.mode == "RGB" and img.size == (9, 7)
    if mode == "I;16":  # scaled to 8 bits, not clipped to white
        assert np.asarray(img).max() < 255 or np.asarray(img).min() < 250


def _translator(tmp_path, net, kind: type[Translator] = Translator, **kwargs) -> Translator:
    from cyclegan.checkpoint import save_networks

    save_networks(tmp_path, "latest", {"G_A": net})
    return kind(
        (tmp_path / "latest_net_G_A.pth").read_bytes(),
        {"netG": "resnet_2blocks", "ngf": 8, "norm": "instance", "input_nc": 3, "output_nc": 3},
        4,
        **kwargs,
    )


def test_a_failing_compiled_generator_falls_back_to_the_eager_one(tmp_path, net):
    """On CUDA a repeated batch shape goes to torch.compile's module; should that fail, the actor
    goes on eagerly (here a stand-in that fails, on CPU)."""
    translator = _translator(tmp_path, net)
    calls = []

    class Failing(torch.nn.Module):
        def forward(self, x):
            calls.append(x.shape)
            raise RuntimeError("inductor says no")

    failing = Failing()
    failing.netG, failing.weight = "resnet_2blocks", torch.nn.Parameter(torch.zeros(1, 3))
    translator.compiled = failing
    images = torch.rand(2, 3, 8, 8) * 2 - 1
    first = translator._translate(images)
    for _ in range(COMPILE_AFTER):
        assert torch.equal(translator._translate(images), first)
    assert len(calls) == 1 and translator.compiled is None  # tried once, then eager for good


@pytest.mark.parametrize("one_actor", [False, True], ids=["three stages (GPU)", "one CPU actor"])
def test_the_stages_translate_a_batch_of_mixed_sizes_like_single_images(tmp_path, net, one_actor):
    inputs, outputs = FolderStore(tmp_path / "in"), FolderStore(tmp_path / "out")
    files = {"a.png": _png(9, 7), "b/c.png": _png(12, 12), "d.png": _png(9, 7), "bad.png": b"no"}
    for key, data in files.items():
        inputs.write(key, data)
    keys = np.array(sorted(files), dtype=object)
    rows = {"in_key": keys, "out_key": keys}
    if one_actor:
        decoding = {"store": inputs, "channels": 3}
        writing = {"store": outputs, "fmt": "png", "metadata": {}}
        result = _translator(tmp_path, net, CpuTranslator, decoding=decoding, writing=writing)(rows)
    else:
        result = write(_translator(tmp_path, net)(decode(rows, inputs, 3)), outputs, "png", {})
    assert sorted(result) == ["in_key", "out_key", "reason", "status"]  # no pixels to the driver
    status = dict(zip(result["in_key"], result["status"]))
    assert status == {"a.png": OK, "b/c.png": OK, "d.png": OK, "bad.png": UNREADABLE}
    for key in ("a.png", "b/c.png", "d.png"):
        expected = translate_image(net, decode_image(files[key], key, 3), 4)
        got = Image.open(tmp_path / "out" / key)
        assert got.size == expected.size
        assert np.abs(np.asarray(got, np.int16) - np.asarray(expected, np.int16)).max() <= 1


def test_a_folder_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    store = FolderStore(tmp_path)
    store.write("a/b.png", b"one")
    store.write("a/b.png", b"two")
    assert (tmp_path / "a" / "b.png").read_bytes() == b"two"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.png"]


def _ledgered(tmp_path, identity: str, unreadable: dict | None = None):
    outputs = FolderStore(tmp_path / "out")
    outputs.write("a.png", b"x")
    outputs.write("sub/b.png", b"x")
    part = {"model": identity, "outputs": ["a.png"], "unreadable": unreadable or {}}
    outputs.write("_translation/1-00001.json", json.dumps(part).encode())
    return outputs


def test_a_rerun_skips_outputs_of_the_same_version_only(tmp_path):
    keys = {"a.jpg": 10, "sub/b.png": 10, "c.png": 10}
    outputs = _ledgered(tmp_path, "m/1 AtoB")
    plan = make_plan(keys, outputs, "m/1 AtoB", "png", overwrite=False)
    # a.jpg -> a.png is there from this version; sub/b.png exists but no ledger says who wrote it
    assert plan.already == 1 and [k for k, _ in plan.todo] == ["sub/b.png", "c.png"]
    assert len(make_plan(keys, outputs, "m/2 AtoB", "png", overwrite=False).todo) == 3
    assert len(make_plan(keys, outputs, "m/1 BtoA", "png", overwrite=False).todo) == 3
    assert len(make_plan(keys, outputs, "m/1 AtoB", "png", overwrite=True).todo) == 3


def test_an_unreadable_input_is_read_again_only_once_it_changed(tmp_path):
    outputs = _ledgered(tmp_path, "m/1 AtoB", {"c.png": [10, "not a readable image file"]})
    plan = make_plan({"c.png": 10}, outputs, "m/1 AtoB", "png", overwrite=False)
    assert plan.todo == [] and plan.unreadable == {"c.png": "not a readable image file"}
    assert make_plan({"c.png": 11}, outputs, "m/1 AtoB", "png", overwrite=False).todo


def test_two_inputs_with_one_output_are_refused_not_overwritten(tmp_path):
    plan = make_plan({"a.jpg": 1, "a.png": 1}, FolderStore(tmp_path), "m/1 AtoB", "png", False)
    assert plan.todo == [("a.jpg", "a.png")] and "a.png" in plan.failures


def test_inputs_are_images_only_and_the_jobs_own_files_are_left_out(tmp_path):
    store = FolderStore(tmp_path)
    for key in ("a.PNG", "notes.txt", "_translation.json", "_translation/1.json", "s/b.webp"):
        store.write(key, b"x")
    assert input_keys(store) == {"a.PNG": 1, "s/b.webp": 1}
    with pytest.raises(UserError, match="no images here"):
        input_keys(FolderStore(tmp_path / "s" / "none"))


def test_the_report_counts_and_completeness(tmp_path):
    tally = Tally(FolderStore(tmp_path), "m/1 AtoB", {"a": 1, "b": 2, "c": 3}, 3, echo=lambda s: 0)
    tally.add("a", "a.png", OK, "")
    tally.add("b", "b.png", UNREADABLE, "not a readable image file")
    report = build_report(tally, {"name": "m"}, 4, {"z": "broken"}, direction="AtoB")
    assert report["counts"]["failed"] == 2 and report["counts"]["unreadable"] == 2
    assert not report["complete"] and report["counts"]["missing"] == 1  # "c" never came back
    tally.add("c", "c.png", OK, "")
    assert build_report(tally, {"name": "m"}, 4, {}, direction="AtoB")["complete"]
    tally.flush()
    part = json.loads(next((tmp_path / "_translation").iterdir()).read_text())
    assert part["outputs"] == ["a.png", "c.png"] and list(part["unreadable"]) == ["b"]


def test_an_output_inside_the_input_is_refused(tmp_path):
    from orchestrator.batch.stores import S3Store, check_apart

    with pytest.raises(UserError, match="inside --input"):
        check_apart(FolderStore(tmp_path), FolderStore(tmp_path / "out"))
    with pytest.raises(UserError, match="inside --input"):
        check_apart(S3Store("b", "in/"), S3Store("b", "in/out/"))
    check_apart(S3Store("b", "in/"), S3Store("b", "out/"))
    check_apart(FolderStore(tmp_path / "in"), FolderStore(tmp_path / "out"))


def test_workers_take_a_number_or_a_range():
    assert parse_workers("4") == (4, 4) and parse_workers("1-8") == (1, 8)
    for bad in ("0", "8-1", "x", "1-"):
        with pytest.raises(UserError, match="--workers"):
            parse_workers(bad)


def test_an_output_that_is_a_file_or_an_unknown_scheme_is_refused(tmp_path):
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(UserError, match="--output .*a file"):
        open_store(str(tmp_path / "f.png"), None, "--output", output=True)
    with pytest.raises(UserError, match="unsupported scheme gs://"):
        open_store("gs://b/p", None, "--output", output=True)


def test_every_option_is_explained(capsys):
    with pytest.raises(SystemExit):
        run_cli(main, ["translate", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--workers",
        "--gpus-per-worker",
        "--batch-size",
        "--format",
        "--direction",
        "--dry-run",
        "--overwrite",
        "--address",
        "--s3-endpoint-url",
    ):
        assert flag in text


@pytest.mark.parametrize(
    ("nodes", "gpus", "refused"),
    [
        ([{"CPU": 8.0, "GPU": 2.0}], 2.0, None),
        ([{"CPU": 8.0, "GPU": 2.0}], 4.0, "--gpus-per-worker 4: no node of this cluster has that"),
        ([{"CPU": 8.0}, {"CPU": 1.0, "GPU": 1.0}], 0.5, None),
        ([{"CPU": 0.5}], 0.0, "no node of this cluster has a whole CPU"),
    ],
)
def test_a_worker_no_node_can_hold_is_refused_on_a_cluster_that_cannot_grow(
    monkeypatch, nodes, gpus, refused
):
    import orchestrator.runtime as runtime
    from orchestrator.batch.job import _check_fits

    monkeypatch.setattr(runtime, "alive_nodes", lambda: nodes)
    monkeypatch.setattr(runtime, "has_autoscaler", lambda: False)
    if refused is None:
        _check_fits(gpus)
    else:
        with pytest.raises(UserError, match=refused.replace("-", r"\-")):
            _check_fits(gpus)
    monkeypatch.setattr(runtime, "has_autoscaler", lambda: True)  # it can add the nodes it needs
    _check_fits(gpus)
