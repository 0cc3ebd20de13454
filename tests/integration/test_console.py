"""The main job's terminal (orchestrator.sweep.console): the user's lines there; library prints,
C-level writes and other loggers' records in the run's log; this project's own warnings in both."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""\
    import logging, os, sys
    from orchestrator.sweep.console import RunConsole
    logging.basicConfig(level=logging.INFO)
    console = RunConsole(sys.argv[1], verbose=sys.argv[2] == "verbose")
    with console.captured():
        print("a library's print")
        os.write(2, b"a C++ log line\\n")
        logging.getLogger("ray.tune").warning("Ray's warning")
        logging.getLogger("orchestrator.sweep.tuner").warning("our warning")
        console.echo("what the user reads")
    print("after the run")
""")


def _run(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess, Path]:
    log = tmp_path / mode / "results" / "x.log"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log), mode],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    return out, log


def test_only_the_users_lines_and_our_warnings_reach_the_terminal_the_rest_goes_to_the_log(
    tmp_path,
):
    out, log = _run(tmp_path, "quiet")
    assert out.stdout == "what the user reads\nafter the run\n"
    assert out.stderr == "WARNING orchestrator.sweep.tuner: our warning\n"
    written = log.read_text()
    for line in (
        "a library's print",
        "a C++ log line",
        "Ray's warning",
        "our warning",
        "what the user reads",
    ):
        assert line in written, written


def test_verbose_leaves_everything_on_the_terminal(tmp_path):
    out, log = _run(tmp_path, "verbose")
    assert "a library's print" in out.stdout and "what the user reads" in out.stdout
    assert "a C++ log line" in out.stderr and "Ray's warning" in out.stderr
    assert not log.exists()
