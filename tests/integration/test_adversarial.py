"""Hostile and careless input, as a table: manifests, datasets, archives, images and S3 keys.

Every case runs a real command (in process through `run_cli`; in a subprocess where memory could
run away) and must end with its exit code (2, or 0 where the input is fine), one message naming
the file, field or URL, no traceback, nothing written outside the case's output and cache
folders, in bounded time (and, for the subprocess cases, bounded memory).
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tarfile
import threading
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from cyclegan.commands.runner import run_cli

REPO = Path(__file__).resolve().parents[2]
SECONDS = (
    120  # per case: a hang fails it; one tiny epoch can take a minute on a loaded 2-core machine
)
MAX_RSS_MB = (
    1500  # for the subprocess cases: torch alone takes ~400 MB; a bomb expanded takes gigabytes
)


@dataclass
class Case:
    id: str
    make: Callable[
        [Path], list[str]
    ]  # builds the input under the case folder, returns the command line
    code: int
    expect: str | tuple[str, ...]  # in the output (stdout and stderr); {root} is the case folder
    env: dict[str, str] = field(default_factory=dict)
    subprocess: bool = False  # memory could run away: measure it in a child process
    s3: bool = False  # needs the moto S3 server (s3_env)


# -- inputs ----------------------------------------------------------------------------------------
def _png(size=(8, 8), color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height`: PIL reads only the header when it opens it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _dataset(root: Path, extra: dict[str, bytes] | None = None, n: int = 2) -> Path:
    """trainA/ trainB/ with `n` tiny images each, plus `extra` files (relative path -> content)."""
    data = root / "in" / "ds"
    for split in ("trainA", "trainB"):
        (data / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (data / split / f"{i}.png").write_bytes(
                _png((32, 32), (40 * i, 100, 200 if split == "trainA" else 20))
            )
    for rel, content in (extra or {}).items():
        (data / rel).write_bytes(content)
    return data


def _fifo_dataset(root: Path) -> Path:
    data = _dataset(root)
    os.mkfifo(data / "trainA" / "pipe.png")  # opening it would block until a writer comes: forever
    return data


def _manifest(content: str | bytes) -> Callable[[Path], list[str]]:
    def make(root: Path) -> list[str]:
        path = root / "in" / "m.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return ["orchestrator", "validate", str(path), "--offline"]

    return make


def _space(entries: str) -> Callable[[Path], list[str]]:
    """A manifest with these search.space entries (on line 2) and a good task."""
    return _manifest("name: x\nsearch: {space: {" + entries + "}}\n" + GOOD_TASK)


def _validate_path(path_of: Callable[[Path], str]) -> Callable[[Path], list[str]]:
    return lambda root: ["orchestrator", "validate", path_of(root), "--offline"]


def _inspect(ref_of: Callable[[Path], str], *flags: str) -> Callable[[Path], list[str]]:
    return lambda root: [
        "cyclegan",
        "data",
        "inspect",
        ref_of(root),
        "--cache_dir",
        str(root / "cache"),
        "--no_progress",
        *flags,
    ]


def _train(data_of: Callable[[Path], Path], *flags: str) -> Callable[[Path], list[str]]:
    """One tiny epoch under the default DataLoader worker processes."""
    return lambda root: [
        "cyclegan",
        "train",
        "--dataroot",
        str(data_of(root)),
        "--checkpoints_dir",
        str(root / "out"),
        "--name",
        "t",
        "--netG",
        "resnet_1blocks",
        "--ngf",
        "4",
        "--ndf",
        "4",
        "--load_size",
        "32",
        "--crop_size",
        "32",
        "--n_epochs",
        "1",
        "--n_epochs_decay",
        "0",
        "--device",
        "cpu",
        "--n_samples",
        "1",
        "--save_epoch_freq",
        "1",
        "--num_threads",
        "2",
        *flags,
    ]


def _archive(
    kind: str, members: dict[str, bytes | None], big: tuple[str, int] | None = None
) -> Callable[[Path], str]:
    """A .zip or .tar.gz holding a valid dataset (ds/trainA, ds/trainB) and `members` (None: a
    folder); `big`: one member of that many zero bytes, written as a stream."""

    def make(root: Path) -> str:
        (root / "in").mkdir(parents=True, exist_ok=True)
        entries = {"ds/trainA/0.png": _png(), "ds/trainB/0.png": _png(), **members}
        if kind == "zip":
            path = root / "in" / "a.zip"
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, data in entries.items():
                    zf.writestr(
                        zipfile.ZipInfo(name.rstrip("/") + "/") if data is None else name,
                        b"" if data is None else data,
                    )
                if big:
                    with zf.open(zipfile.ZipInfo(big[0]), "w", force_zip64=True) as out:
                        for _ in range(big[1] >> 20):
                            out.write(bytes(1 << 20))
            return str(path)
        path = root / "in" / "a.tar.gz"
        with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tf:
            for name, data in entries.items():
                info = tarfile.TarInfo(name)
                if data is None:
                    info.type = tarfile.DIRTYPE
                    tf.addfile(info)
                else:
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
            if big:
                info = tarfile.TarInfo(big[0])
                info.size = big[1]
                tf.addfile(info, io.BytesIO(bytes(big[1])))
        return str(path)

    return make


def _s3_prefix(keys: dict[str, bytes]) -> Callable[[Path], str]:
    """A valid dataset under a fresh prefix of the moto bucket, plus `keys` (relative to the
    prefix)."""

    def make(root: Path) -> str:
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket="hostile")
        prefix = uuid.uuid4().hex[:8]
        for rel, data in {"trainA/0.png": _png(), "trainB/0.png": _png(), **keys}.items():
            client.put_object(Bucket="hostile", Key=f"{prefix}/{rel}", Body=data)
        return f"s3://hostile/{prefix}"

    return make


LAUGHS = (
    "".join(
        f"{x}: &{x} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
        for p, x in zip([""] + list("abcdefgh"), "abcdefghi")
    )
    + "name: x\ntasks: [{name: t, data: /d}]\n"
)
GOOD_TASK = "tasks: [{name: t, data: 'synthetic://stripes?size=32&n_train=4&n_test=2'}]\n"
# an absolute member's target: must never appear
ESCAPE = f"/tmp/adversarial-{uuid.uuid4().hex[:8]}-escaped.png"

CASES = [
    # -- manifests: loading ------------------------------------------------------------------------
    Case(
        "billion-laughs",
        _manifest(LAUGHS),
        2,
        "more than 100000 YAML values once its aliases",
        subprocess=True,
    ),
    Case(
        "deep-nesting",
        _manifest("name: " + "[" * 3000 + "]" * 3000 + "\n"),
        2,
        "m.yaml: nested too deeply",
    ),
    Case(
        "duplicate-key",
        _manifest("name: x\ntasks:\n  - name: t\n    data: /d\n    train: {lr: 0.1, lr: 0.2}\n"),
        2,
        "tasks[0].train.lr (line 5): duplicate key (first at line 5)",
    ),
    Case(
        "duplicate-top-key",
        _manifest("name: x\nname: y\n" + GOOD_TASK),
        2,
        "name (line 2): duplicate key (first at line 1)",
    ),
    Case(
        "not-utf8",
        _manifest(b"name: caf\xe9\n" + GOOD_TASK.encode()),
        2,
        "m.yaml: not UTF-8 text (byte 9, line 1)",
    ),
    Case(
        "dev-zero",
        _validate_path(lambda root: "/dev/zero"),
        2,
        "/dev/zero: cannot read the manifest: not a regular file",
    ),
    Case(
        "fifo-manifest",
        _validate_path(lambda root: (os.mkfifo(root / "m.fifo"), str(root / "m.fifo"))[1]),
        2,
        "m.fifo: cannot read the manifest: not a regular file",
    ),
    Case(
        "huge-manifest",
        _manifest("name: x\n" + GOOD_TASK + "#" * (2 << 20) + "\n"),
        2,
        "m.yaml: larger than 1024 KiB",
    ),
    Case("keys-not-names", _manifest("name: x\n7: y\n" + GOOD_TASK), 2, "7 is not a field name"),
    # -- manifests: names (folder names) -----------------------------------------------------------
    Case(
        "name-trailing-newline",
        _manifest('name: "x\\n"\n' + GOOD_TASK),
        2,
        "name (line 1): 'x\\n' is not a valid name",
    ),
    Case(
        "task-name-slash",
        _manifest("name: x\ntasks: [{name: a/../b, data: /d}]\n"),
        2,
        "tasks[0].name (line 2): 'a/../b' is not a valid name",
    ),
    Case(
        "task-name-long",
        _manifest(f"name: x\ntasks: [{{name: {'a' * 300}, data: /d}}]\n"),
        2,
        "tasks[0].name (line 2): 'aaaaaaaaaaaa...aaaaaaaaaaaaa' is 300 characters long; a name has "
        "at most 64",
    ),
    # -- manifests: numbers and distributions ------------------------------------------------------
    Case(
        "nan",
        _manifest("name: x\ndefaults:\n  train: {lr: .nan}\n" + GOOD_TASK),
        2,
        "defaults.train.lr (line 3): must be a finite number",
    ),
    Case(
        "inf-resources",
        _manifest("name: x\ndefaults: {resources: {cpus_per_worker: .inf}}\n" + GOOD_TASK),
        2,
        "defaults.resources.cpus_per_worker (line 2): Input should be a finite number",
    ),
    Case(
        "inf-in-range",
        _space("lr: {uniform: [0.1, .inf]}"),
        2,
        "search.space.lr.uniform (line 2): must be finite numbers",
    ),
    Case(
        "quniform-q-0",
        _space("lambda_cyc: {quniform: [1, 10, 0]}"),
        2,
        "search.space.lambda_cyc.quniform (line 2): q (0) must be > 0",
    ),
    Case(
        "quniform-no-multiple",
        _space("lambda_cyc: {quniform: [1, 2, 5]}"),
        2,
        "no multiple of q (5) lies between 1 and 2",
    ),
    Case(
        "float-range-on-int",
        _space("pool_size: {uniform: [0, 50]}"),
        2,
        "search.space.pool_size.uniform (line 2): pool_size is a whole number",
    ),
    Case(
        "fractional-q-on-int",
        _space("batch_size: {quniform: [1, 4, 0.5]}"),
        2,
        "search.space.batch_size.quniform (line 2): batch_size is a whole number",
    ),
    Case(
        "low-above-high",
        _space("lr: {loguniform: [0.1, 0.01]}"),
        2,
        "low (0.1) must be below high (0.01)",
    ),
    Case(
        "empty-choice",
        _space("ngf: {choice: []}"),
        2,
        "search.space.ngf.choice (line 2): must be a non-empty list",
    ),
    # -- manifests: sizes the networks cannot take -------------------------------------------------
    Case(
        "resnet-crop-250",
        _manifest("name: x\ndefaults: {train: {crop_size: 250}}\n" + GOOD_TASK),
        2,
        "defaults.train.crop_size (line 2): 250 cannot go through --netG resnet_9blocks and come "
        "back at the same size: "
        "it needs a multiple of 4 of at least 8 (e.g. 248 or 252)",
    ),
    Case(
        "unet-searched-crop",
        _manifest(
            "name: x\ndefaults: {train: {netG: unet_256, load_size: 286}}\n"
            "search: {space: {crop_size: {choice: [256, 128]}}}\n" + GOOD_TASK
        ),
        2,
        "search.space.crop_size (line 3): 128 cannot go through --netG unet_256 and come back at "
        "the same size: it needs a multiple "
        "of 256 of at least 256 (e.g. 256 or 512) (when the search picks crop_size=128)",
    ),
    Case(
        "discriminator-too-deep",
        _manifest(
            "name: x\ndefaults: {train: {netD: n_layers, n_layers_D: 5, crop_size: 64, load_size: "
            "64}}\n" + GOOD_TASK
        ),
        2,
        "defaults.train.crop_size (line 2): 64 is too small for --netD n_layers with --n_layers_D "
        "5",
    ),
    Case(
        "every-problem-of-a-task",
        _manifest(
            "name: x\ntasks:\n  - name: bad name\n    data: s3://Bad?Bucket/x\n"
            "    train: {lr: -1, crop_size: 250}\n"
        ),
        2,
        (
            "4 problem(s)",
            "tasks[0].name (line 3): 'bad name' is not a valid name",
            "tasks[0].data (line 4): not a valid S3",
            "tasks[0].train.lr (line 5): must be positive",
            "tasks[0].train.crop_size (line 5): 250 cannot go through",
        ),
    ),
    # -- manifests: data references, offline -------------------------------------------------------
    Case(
        "bad-bucket",
        _manifest("name: x\ntasks: [{name: t, data: 's3://a b/x'}]\n"),
        2,
        "tasks[0].data (line 2): not a valid S3 bucket name",
    ),
    Case(
        "unsupported-archive",
        _manifest("name: x\ntasks: [{name: t, data: 's3://bucket/h2z.rar'}]\n"),
        2,
        "tasks[0].data (line 2): .rar archives are not supported",
    ),
    Case(
        "unknown-scheme",
        _manifest("name: x\ntasks: [{name: t, data: 'gs://bucket/x'}]\n"),
        2,
        "tasks[0].data (line 2): unsupported scheme gs://",
    ),
    Case(
        "synthetic-kind",
        _manifest("name: x\ntasks: [{name: t, data: 'synthetic://zebra'}]\n"),
        2,
        "unknown synthetic kind 'zebra'",
    ),
    Case(
        "synthetic-bounds",
        _manifest(
            "name: x\ntasks: [{name: t, data: 'synthetic://stripes?size=100000&n_train=0'}]\n"
        ),
        2,
        "tasks[0].data (line 2): synthetic parameter(s) out of bounds: size=100000, n_train=0",
    ),
    Case(
        "synthetic-seed",
        _manifest("name: x\ntasks: [{name: t, data: 'synthetic://stripes?seed=-1'}]\n"),
        2,
        "out of bounds: seed=-1",
    ),
    Case(
        "synthetic-photo-size",
        _manifest("name: x\ntasks: [{name: t, data: 'synthetic://photo?size=512'}]\n"),
        2,
        "tasks[0].data (line 2): synthetic parameter(s) out of bounds: size=512 (accepted for "
        "photo: size 8..256",
    ),
    Case(
        "good-manifest",
        _manifest(
            "name: x\ndefaults: {train: {crop_size: 24, load_size: 24}}\n"
            "search: {space: {batch_size: {quniform: [1, 4, 1]}, crop_size: {choice: [24, 32]}, "
            "load_size: 32}}\n" + GOOD_TASK
        ),
        0,
        "valid; 1 task(s), 2 trial(s)",
    ),  # 1 sample + the baseline
    # -- archives ----------------------------------------------------------------------------------
    Case(
        "zip-dotdot",
        _inspect(_archive("zip", {"ds/../../../escaped.png": b"x"})),
        2,
        "member 'ds/../../../escaped.png' would land outside",
    ),
    Case(
        "zip-absolute",
        _inspect(_archive("zip", {ESCAPE: b"x"})),
        2,
        f"member '{ESCAPE}' would land outside the cache directory (absolute path)",
    ),
    Case(
        "tar-dotdot",
        _inspect(_archive("tar", {"../escaped.png": b"x"})),
        2,
        "member '../escaped.png' would land outside",
    ),
    Case(
        "zip-bomb",
        _inspect(_archive("zip", {}, ("ds/trainA/bomb.png", 8 << 20))),
        2,
        "a.zip: extracting it would write more than 2097152 bytes (0.00195 GiB), the limit on an "
        "archive's extracted size (member "
        "'ds/trainA/bomb.png'",
        env={"CYCLEGAN_ARCHIVE_MAX_BYTES": "2M"},
    ),
    Case(
        "tar-bomb",
        _inspect(_archive("tar", {}, ("ds/trainA/bomb.png", 8 << 20))),
        2,
        "raise it with $CYCLEGAN_ARCHIVE_MAX_BYTES",
        env={"CYCLEGAN_ARCHIVE_MAX_BYTES": "2M"},
    ),
    Case(
        "bomb-limit-raised",
        _inspect(_archive("zip", {}, ("ds/trainA/bomb.png", 4 << 20))),
        0,
        "trainA/",
        env={"CYCLEGAN_ARCHIVE_MAX_BYTES": "1G"},
    ),
    Case(
        "too-many-members",
        _inspect(_archive("zip", {f"ds/trainA/{i}.txt": b"" for i in range(20)})),
        2,
        "a.zip: more than 10 members, the limit on an archive's members",
        env={"CYCLEGAN_ARCHIVE_MAX_MEMBERS": "10"},
    ),
    Case(
        "bad-limit",
        _inspect(_archive("zip", {})),
        2,
        "$CYCLEGAN_ARCHIVE_MAX_BYTES='lots': give a positive number",
        env={"CYCLEGAN_ARCHIVE_MAX_BYTES": "lots"},
    ),
    Case(
        "zip-file-and-folder",
        _inspect(_archive("zip", {"ds/trainB/x": b"file", "ds/trainB/x/1.png": _png()})),
        2,
        "member 'ds/trainB/x' is both a file and a folder",
    ),
    Case(
        "tar-file-and-folder",
        _inspect(_archive("tar", {"ds/trainB/x": b"file", "ds/trainB/x/": None})),
        2,
        "member 'ds/trainB/x' is both a file and a folder",
    ),
    Case(
        "zip-long-name",
        _inspect(_archive("zip", {f"ds/trainA/{'n' * 300}.png": _png()})),
        2,
        "has a name of 304 bytes",
    ),
    Case(
        "tar-long-name",
        _inspect(_archive("tar", {f"ds/trainA/{'n' * 300}.png": _png()})),
        2,
        "file systems allow 255: rename it",
    ),
    # -- S3 keys (moto) ----------------------------------------------------------------------------
    Case(
        "s3-long-key",
        _inspect(_s3_prefix({f"trainA/{'k' * 300}.png": _png()})),
        2,
        "has a name of 304 bytes",
        s3=True,
    ),
    Case(
        "s3-dotdot-key",
        _inspect(_s3_prefix({"../../escaped.png": b"x"})),
        2,
        "key '../../escaped.png' would land outside",
        s3=True,
    ),
    Case(
        "s3-absolute-key",
        _inspect(_s3_prefix({"/tmp/escaped.png": b"x"})),
        2,
        "key '/tmp/escaped.png' would land outside",
        s3=True,
    ),
    Case(
        "s3-file-and-folder",
        _inspect(_s3_prefix({"trainB/x": b"file", "trainB/x/1.png": _png()})),
        2,
        "trainB/x: this key is both a file and a folder",
        s3=True,
    ),
    # -- images ------------------------------------------------------------------------------------
    Case(
        "png-30000",
        _inspect(
            lambda root: str(_dataset(root, {"trainA/huge.png": _png_header_only(30000, 30000)}))
        ),
        2,
        "huge.png: image of 900000000 pixels, more than the limit of 89478485 pixels",
        subprocess=True,
    ),
    Case(
        "png-in-warning-range",
        _train(lambda root: _dataset(root, {"trainB/big.png": _png_header_only(10000, 10000)})),
        2,
        "big.png: image of 10000x10000 pixels, more than the limit of 89478485 pixels (a guard "
        "against decompression bombs); "
        "raise it with $CYCLEGAN_MAX_IMAGE_PIXELS",
    ),
    Case(
        "png-limit-raised",
        _inspect(
            lambda root: str(_dataset(root, {"trainA/huge.png": _png_header_only(30000, 30000)}))
        ),
        0,
        "trainA/",
        env={"CYCLEGAN_MAX_IMAGE_PIXELS": "1000000000"},
    ),
    Case(
        "fifo-inspect",
        _inspect(lambda root: str(_fifo_dataset(root))),
        0,
        "trainA/pipe.png: not a regular file (a FIFO); not opened",
    ),
    Case("fifo-train", _train(_fifo_dataset), 0, "epoch 1/1"),
    Case(
        "fifo-train-strict",
        _train(_fifo_dataset, "--strict_data"),
        2,
        "pipe.png: not a readable image",
    ),
    Case(
        "truncated-in-worker",
        _train(lambda root: _dataset(root, {"trainA/cut.png": _png((64, 64))[:-40]}, n=1)),
        2,
        "cut.png: cannot read image",
    ),
]


# A child's peak memory (ru_maxrss) starts at its parent's resident size when it was forked: Linux
# keeps the old image's high-water mark across exec, and pytest's grows as the suite runs. So the
# command is started by a small Python in between, which reports the command's own peak.
PEAK_OF_CHILD = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _run(argv: list[str], env: dict[str, str], isolated: bool, capsys) -> tuple[int, str, float]:
    """(exit code, stdout + stderr, peak memory in MB of a subprocess, else 0)."""
    if isolated:
        child_env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
        peak = Path(os.environ.get("TMPDIR", "/tmp")) / f"peak-{uuid.uuid4().hex}"
        proc = subprocess.Popen(
            [sys.executable, "-c", PEAK_OF_CHILD, str(peak), "-m", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env,
            text=True,
            start_new_session=True,  # the time limit ends the command too, not only its starter
        )
        killer = threading.Timer(SECONDS, lambda: os.killpg(proc.pid, 9))
        killer.start()
        try:
            out = proc.stdout.read()  # to the end: the command has exited (or was killed)
            proc.wait()
        finally:
            killer.cancel()
            proc.stdout.close()
        rss_kb = float(peak.read_text()) if peak.exists() else 0.0
        peak.unlink(missing_ok=True)
        return proc.returncode, out, rss_kb / 1024
    from cyclegan.commands import main as cyclegan_main
    from orchestrator.commands import main as orchestrator_main

    main = {"cyclegan": cyclegan_main, "orchestrator": orchestrator_main}[argv[0]]
    code = run_cli(main, argv[1:])
    captured = capsys.readouterr()
    return code, captured.out + captured.err, 0.0


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if not p.is_dir()}


@pytest.mark.timeout(3 * SECONDS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path, monkeypatch, capsys, request):
    if case.s3:
        request.getfixturevalue("s3_env")
    root = tmp_path / "case"
    (root / "cwd").mkdir(parents=True)
    argv = case.make(root)
    inputs = _files(root)
    monkeypatch.chdir(root / "cwd")
    monkeypatch.setenv("CYCLEGAN_CACHE_DIR", str(root / "cache"))
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    code, output, rss = _run(argv, case.env, case.subprocess, capsys)
    elapsed = time.monotonic() - started

    assert code == case.code, output[-3000:]
    for expected in (case.expect,) if isinstance(case.expect, str) else case.expect:
        assert expected.format(root=root) in output, output[-3000:]
    assert "Traceback" not in output and "DataLoader worker" not in output, output[-3000:]
    if case.code == 2:
        assert output.count("error: ") == 1, output[-3000:]
    written = _files(root) - inputs
    outside = {
        p
        for p in written
        if not p.is_relative_to(root / "out") and not p.is_relative_to(root / "cache")
    }
    assert not outside, sorted(outside)
    assert not list(tmp_path.rglob("escaped.png")) and not Path(ESCAPE).exists()
    if case.code == 2:  # a refused dataset leaves no snapshot (nor a half-built one) in the cache
        assert not list((root / "cache").glob("*/*/snapshots/*"))
    assert elapsed < SECONDS
    if case.subprocess:
        assert rss < MAX_RSS_MB, f"{rss:.0f} MB"
