"""Dataset references without S3: folders, archives, synthetic://, traversal refusal, the `data`
CLI."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from cyclegan.commands import main
from cyclegan.commands.runner import run_cli
from cyclegan.data import DatasetError
from cyclegan.sources import fetch_dataset, parse_reference, resolve_dataset
from cyclegan.sources.synthetic import generate


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative posix path -> bytes), for file-for-file comparisons."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def make_zip(
    path: Path, source: Path, top: str = "tiny", extra: dict[str, bytes] | None = None
) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for rel, data in tree(source).items():
            zf.writestr(f"{top}/{rel}", data)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, source: Path, mode: str = "w:gz", top: str = "tiny") -> Path:
    with tarfile.open(path, mode) as tf:
        tf.add(source, arcname=top)
    return path


@pytest.mark.parametrize(
    "ref,kind,location",
    [
        ("/data/horse2zebra", "folder", "/data/horse2zebra"),
        ("file:///data/horse2zebra", "folder", "/data/horse2zebra"),
        ("/data/h2z.tar.gz", "archive", "/data/h2z.tar.gz"),
        ("s3://bucket/horse2zebra/", "s3", "s3://bucket/horse2zebra"),
        ("s3://bucket", "s3", "s3://bucket"),
        ("s3://bucket/zips/horse2zebra.zip", "s3-archive", "s3://bucket/zips/horse2zebra.zip"),
        ("synthetic://stripes?size=16&seed=3", "synthetic", "stripes"),
    ],
)
def test_reference_forms(ref, kind, location):
    parsed = parse_reference(ref)
    assert (parsed.kind, parsed.location) == (kind, location)
    if kind == "synthetic":
        assert parsed.canonical == "synthetic://stripes?size=16&n_train=200&n_test=40&seed=3"


@pytest.mark.parametrize(
    "ref,message",
    [
        ("gs://bucket/data", "unsupported scheme gs://"),
        ("https://example.com/h2z.zip", "unsupported scheme https://"),
        ("s3:///prefix", "no bucket name"),
        (
            "synthetic://zebras",
            "unknown synthetic kind 'zebras' (available: colorshift, stripes, photo)",
        ),
        ("synthetic://colorshift?size=big", "size='big' is not an integer"),
        ("synthetic://colorshift?colour=red", "unknown synthetic parameter 'colour'"),
        ("synthetic://colorshift?size=4", "out of bounds: size=4 (accepted: size 8..1024"),
        (
            "synthetic://photo?size=512&n_train=0",
            "out of bounds: size=512, n_train=0 (accepted for photo: size 8..256, n_train 1..20000",
        ),
    ],
)
def test_bad_references_list_the_accepted_forms(ref, message):
    with pytest.raises(DatasetError) as err:
        parse_reference(ref)
    assert (
        message in str(err.value)
        and "s3://bucket/prefix" in str(err.value)
        and "synthetic://KIND" in str(err.value)
    )


def test_missing_folder_and_plain_file(tmp_path):
    with pytest.raises(
        DatasetError, match="nowhere: dataset folder not found; a dataset reference is one of"
    ):
        resolve_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match="not a .zip, .tar or .tar.gz archive"):
        resolve_dataset(str(tmp_path / "notes.txt"))


def test_local_folder_is_used_in_place(tiny_dataset, tmp_path):
    for ref in (str(tiny_dataset), f"file://{tiny_dataset}"):
        result = fetch_dataset(ref, str(tmp_path / "cache"))
        assert result.path == tiny_dataset and result.kind == "folder" and result.downloaded == []
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("fmt", ["zip", "tar", "tar.gz"])
def test_archive_resolves_to_the_folder_inside_and_is_extracted_once(tiny_dataset, tmp_path, fmt):
    archive = tmp_path / f"tiny.{fmt}"
    make_zip(archive, tiny_dataset) if fmt == "zip" else make_tar(
        archive, tiny_dataset, "w" if fmt == "tar" else "w:gz"
    )
    cache = str(tmp_path / "cache")
    first = fetch_dataset(str(archive), cache)
    assert first.built and first.path.name == "tiny" and (first.path / "trainA").is_dir()
    assert tree(first.path) == tree(tiny_dataset)
    assert first.path.is_relative_to(tmp_path / "cache")
    again = fetch_dataset(str(archive), cache)
    assert not again.built and again.path == first.path
    # A replaced archive (new size or mtime) is extracted again, into a new snapshot.
    make_zip(
        archive, tiny_dataset, extra={"tiny/README": b"v2"}
    ) if fmt == "zip" else archive.write_bytes(archive.read_bytes() + bytes(10240))
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))
    changed = fetch_dataset(str(archive), cache)
    assert changed.built and changed.path != first.path and tree(first.path) == tree(tiny_dataset)


def test_tar_of_the_dataset_folder_itself(tiny_dataset, tmp_path):
    """`tar czf d.tgz .` writes './' and './trainA/...': the root is the top of the archive."""
    result = fetch_dataset(
        str(make_tar(tmp_path / "d.tgz", tiny_dataset, top=".")), str(tmp_path / "cache")
    )
    assert result.path == result.snapshot / "data" and tree(result.path) == tree(tiny_dataset)


def _zip_with(path: Path, name: str, symlink: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ds/trainA/a.png", b"x")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = 0o120777 << 16
        zf.writestr(info, b"/etc/passwd" if symlink else b"evil")
    return path


def _tar_with(path: Path, name: str, kind: bytes = tarfile.REGTYPE) -> Path:
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("ds/trainA/a.png")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
        evil = tarfile.TarInfo(name)
        evil.type = kind
        if kind == tarfile.SYMTYPE:
            evil.linkname = "/etc/passwd"
            tf.addfile(evil)
        else:
            evil.size = 4
            tf.addfile(evil, io.BytesIO(b"evil"))
    return path


@pytest.mark.parametrize(
    "make,name,why",
    [
        (
            lambda p: _zip_with(p / "a.zip", "ds/../../evil.png"),
            "ds/../../evil.png",
            "'..' in the path",
        ),
        (lambda p: _zip_with(p / "a.zip", "/tmp/evil.png"), "/tmp/evil.png", "absolute path"),
        (
            lambda p: _zip_with(p / "a.zip", "ds/trainA/link.png", symlink=True),
            "ds/trainA/link.png",
            "symbolic link",
        ),
        (lambda p: _tar_with(p / "a.tar", "../evil.png"), "../evil.png", "'..' in the path"),
        (lambda p: _tar_with(p / "a.tar", "/evil.png"), "/evil.png", "absolute path"),
        (
            lambda p: _tar_with(p / "a.tar", "ds/trainA/link.png", tarfile.SYMTYPE),
            "ds/trainA/link.png",
            "is a link",
        ),
    ],
)
def test_archive_members_outside_the_cache_are_refused(tmp_path, make, name, why):
    archive = make(tmp_path)
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(DatasetError) as err:
        fetch_dataset(str(archive), str(cache))
    assert repr(name) in str(err.value) and why in str(err.value) and str(archive) in str(err.value)
    assert not list(tmp_path.rglob("evil.png")) and not list(tmp_path.rglob("link.png"))
    assert not [
        p for p in cache.rglob("snapshots/*") if not p.name.startswith(".")
    ]  # nothing published


def test_corrupt_archive_and_archive_without_the_layout(tmp_path):
    corrupt = tmp_path / "h2z.zip"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DatasetError, match=r"h2z.zip: archive is corrupt or not a .zip file"):
        resolve_dataset(str(corrupt), str(tmp_path / "cache"))
    truncated = tmp_path / "h2z.tar.gz"
    make_tar(truncated, generate("colorshift", tmp_path / "src", 2, 0, 8))
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DatasetError, match="archive is corrupt"):
        resolve_dataset(str(truncated), str(tmp_path / "cache"))
    flat = tmp_path / "photos.zip"
    with zipfile.ZipFile(flat, "w") as zf:
        zf.writestr("photos/horses/1.jpg", b"x")
        zf.writestr("README", b"x")
    with pytest.raises(
        DatasetError, match=r"no trainA/ or trainB/ anywhere in it \(found: README, photos/\)"
    ):
        resolve_dataset(str(flat), str(tmp_path / "cache"))


def test_synthetic_reference_is_generated_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLEGAN_CACHE_DIR", str(tmp_path / "env-cache"))
    ref = "synthetic://stripes?size=16&n_train=3&n_test=1&seed=5"
    first = fetch_dataset(ref)
    assert first.built and first.path.is_relative_to(tmp_path / "env-cache")
    assert tree(first.path) == tree(generate("stripes", tmp_path / "direct", 3, 1, 16, 5))
    second = fetch_dataset(ref)
    assert not second.built and second.path == first.path


def test_threads_resolving_together_build_once(tmp_path):
    ref, results, errors = "synthetic://colorshift?size=8&n_train=4&n_test=0", [], []

    def resolve():
        try:
            results.append(fetch_dataset(ref, str(tmp_path / "cache")))
        except Exception as err:  # surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=resolve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    assert sum(r.built for r in results) == 1 and len({r.path for r in results}) == 1
    assert len(list((results[0].path / "trainA").iterdir())) == 4


def test_data_inspect_reports_folders_counts_and_unreadable_files(tiny_dataset, tmp_path, capsys):
    assert main(["data", "inspect", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[3:]}
    assert (
        rows["trainA/"] == ["12", "0"]
        and rows["testB_gt/"] == ["4", "0"]
        and rows["total"] == ["40", "0"]
    )

    broken = tmp_path / "broken"
    generate("colorshift", broken, 2, 0, 8)
    (broken / "trainA" / "notes.txt").write_text("not an image")
    for f in (broken / "trainB").iterdir():
        f.unlink()
    assert run_cli(main, ["data", "inspect", str(broken)]) == 2
    captured = capsys.readouterr()
    assert "trainA/notes.txt: cannot identify image file" in captured.out
    assert "trainB/ has no readable images" in captured.err and captured.err.startswith("error: ")
    assert "Traceback" not in captured.err


def test_data_fetch_prints_the_local_root(tmp_path, capsys):
    archive = make_zip(tmp_path / "tiny.zip", generate("colorshift", tmp_path / "src", 2, 1, 8))
    args = ["data", "fetch", str(archive), "--cache_dir", str(tmp_path / "cache"), "--no_progress"]
    assert main(args) == 0
    captured = capsys.readouterr()
    root = Path(captured.out.strip())
    assert (
        root.name == "tiny"
        and tree(root) == tree(tmp_path / "src")
        and "extracted into the cache" in captured.err
    )
    assert main(args) == 0
    captured = capsys.readouterr()
    assert Path(captured.out.strip()) == root and "already up to date" in captured.err
    assert run_cli(main, ["data", "fetch", "ftp://host/x"]) == 2
    assert "unsupported scheme ftp://" in capsys.readouterr().err


def test_a_changed_archive_keeps_only_the_two_newest_snapshots(tmp_path):
    archive, cache, paths = tmp_path / "d.zip", str(tmp_path / "cache"), []
    for version in range(3):
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("d/trainA/a.txt", f"v{version}")
            zf.writestr("d/trainB/b.txt", "b")
        os.utime(archive, ns=(0, (version + 1) * 10**9))
        paths.append(fetch_dataset(str(archive), cache).path)
    assert [(p / "trainA/a.txt").exists() for p in paths] == [False, True, True]
    assert (paths[2] / "trainA/a.txt").read_text() == "v2"


def test_an_endpoint_that_is_not_a_url(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(
        DatasetError, match=r"S3 endpoint 'minio:9000' is not usable .* such as http://minio:9000"
    ):
        resolve_dataset("s3://bucket/h2z", str(tmp_path / "cache"), endpoint_url="minio:9000")


def test_every_data_flag_has_help():
    import argparse

    from cyclegan.commands import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    data = commands.choices["data"]
    subcommands = next(
        a for a in data._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    assert set(subcommands) == {"inspect", "fetch"}
    for parser in subcommands.values():
        flags = {opt for action in parser._actions for opt in action.option_strings}
        assert {"--cache_dir", "--s3_endpoint_url", "--no_progress", "--debug"} <= flags
        assert all(action.help for action in parser._actions)
