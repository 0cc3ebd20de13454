"""`python -m orchestrator models serve TASK`: MLflow's scoring server for a registered model, from
any shell.

`mlflow models serve` starts `uvicorn` by name from PATH, so from a shell where the virtual
environment is not activated it fails (`uvicorn: not found`). This command runs it with this
Python's bin folder first on PATH, the model's own environment (`--env-manager local`: the
registered model needs nothing this environment lacks) and a local address.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .registry_options import add_registry_options, tracking_uri

DEFAULT_PORT = 5001  # not 5000: `mlflow ui`'s


def register(actions) -> None:
    serve = actions.add_parser(
        "serve",
        help="answer HTTP requests with a registered model (mlflow models serve, ready to run)",
        description="Start MLflow's scoring server (POST /invocations) for a registered model.",
    )
    serve.add_argument(
        "model",
        help="task name (serves models:/<prefix><task>@champion) or any models:/ URI",
    )
    serve.add_argument(
        "--prefix", default="cyclegan-", help="registered model name prefix (default: cyclegan-)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument(
        "-p", "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    add_registry_options(serve)
    serve.set_defaults(run=run_serve)


def serve_command(model_uri: str, host: str, port: int) -> list[str]:
    """The `mlflow models serve` command line, run by this Python."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        host,
        "-p",
        str(port),
    ]


def run_serve(args: argparse.Namespace) -> int:
    model = args.model if ":/" in args.model else f"models:/{args.prefix}{args.model}@champion"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri(args),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    print(f"serving {model} on http://{args.host}:{args.port}/invocations", flush=True)
    command = serve_command(model, args.host, args.port)
    os.execve(command[0], command, env)  # the server replaces this process: one PID to stop
    return 0  # not reached
