"""A full disk and archive bombs: extraction onto a target that cannot hold the archive (a
file-size limit, `ulimit -f`, in a subprocess) is one message and exit 2 with nothing left in the
cache; a member that inflates past the set ratio is refused before anything is written; a
checkpoint write that hits the limit keeps the previous checkpoint intact and says so."""

from __future__ import annotations

import errno
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from cyclegan.errors import DatasetError
from cyclegan.sources import fetch_dataset
from cyclegan.sources.cache import CacheEntry

REPO = Path(__file__).resolve().parents[2]


def dataset_zip(path: Path, big: int) -> Path:
    """A dataset zip (trainA/trainB) with one member of `big` zero bytes: it compresses ~1000x."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("set/trainA/a.png", b"\x89PNG small")
        zf.writestr("set/trainB/b.png", b"\x89PNG small")
        zf.writestr("set/trainA/huge.bin", bytes(big))
    return path


def dataset_tgz(path: Path, big: int) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in (("set/trainA/a.png", b"x"), ("set/trainB/huge.bin", bytes(big))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def snapshots(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("snapshots/*") if p.is_dir()]


def test_extraction_past_the_file_size_limit_is_one_message_and_exit_2(tmp_path):
    archive = dataset_zip(tmp_path / "set.zip", 3 << 20)
    cache = tmp_path / "cache"
    command = (
        f"ulimit -f 1024; exec {sys.executable} -m cyclegan data fetch {archive} "
        f"--cache_dir {cache} --no_progress"
    )
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert str(cache) in line and "3.1 MB" in line and "ulimit -f" in line
    assert "--cache_dir" in line  # what to do
    assert snapshots(cache) == []  # nothing half-written left as a snapshot


def test_a_disk_that_fills_while_writing_is_one_message_and_no_snapshot(tmp_path):
    cache = tmp_path / "cache"
    entry = CacheEntry(str(cache), "zip", "key", "set")

    def build(tmp: Path, previous: list) -> dict:
        (tmp / "data" / "half.png").write_bytes(b"half")
        raise OSError(errno.EFBIG, "File too large", str(tmp / "data" / "half.png"))

    with pytest.raises(DatasetError) as caught:
        entry.get_or_build("snap", build)
    message = str(caught.value)
    assert message.startswith(str(entry.dir)) and "File too large" in message
    assert "MB free" in message and "--cache_dir" in message
    assert snapshots(cache) == []


@pytest.mark.parametrize("kind", ["zip", "tgz"])
def test_an_archive_bomb_is_refused_by_its_ratio_before_it_is_written(kind, tmp_path, monkeypatch):
    # thresholds lowered: the real defaults (100x past 100 MB) would need a 100 MB test file
    monkeypatch.setenv("CYCLEGAN_ARCHIVE_RATIO_FROM", "1M")
    monkeypatch.setenv("CYCLEGAN_ARCHIVE_MAX_RATIO", "100")
    make = dataset_zip if kind == "zip" else dataset_tgz
    archive = make(tmp_path / f"set.{'zip' if kind == 'zip' else 'tar.gz'}", 4 << 20)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="archive bomb.*CYCLEGAN_ARCHIVE_MAX_RATIO"):
        fetch_dataset(str(archive), str(cache))
    assert not [p for p in cache.rglob("huge.bin")] and snapshots(cache) == []
    # raised, the same archive is what the user expects
    monkeypatch.setenv("CYCLEGAN_ARCHIVE_MAX_RATIO", "100000")
    result = fetch_dataset(str(archive), str(cache), require_layout=False)
    assert (next(result.path.rglob("huge.bin"))).stat().st_size == 4 << 20


def test_a_checkpoint_write_past_the_limit_keeps_the_previous_one(tmp_path):
    code = (
        "import torch, pathlib\n"
        "from cyclegan.checkpoint import atomic_save\n"
        f"path = pathlib.Path({str(tmp_path / 'latest_state.pt')!r})\n"
        "atomic_save({'epoch': 1}, path)\n"
        "from cyclegan.commands.runner import run_cli\n"
        "raise SystemExit(run_cli(lambda argv: atomic_save({'w': torch.zeros(10**6)}, path), []))\n"
    )
    done = subprocess.run(
        ["bash", "-c", f'ulimit -f 512; exec {sys.executable} -c "$0"', code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "the previous latest_state.pt is intact" in done.stderr
    import torch

    assert torch.load(tmp_path / "latest_state.pt", weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["latest_state.pt"]  # no temporary file left
