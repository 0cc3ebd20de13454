#!/usr/bin/env bash
# Run an experiment manifest on a Ray cluster as a Ray job. What it runs is this one line
# (printed before it runs), from the repository root:
#
#   ray job submit --address "$RAY_ADDRESS" --submission-id ID --working-dir . \
#       --runtime-env cluster/runtime_env.yaml -- python -m orchestrator run MANIFEST [OPTIONS]
#
# Usage:
#   cluster/submit.sh experiments/horse2zebra.yaml                 # submit, then follow the logs to the end
#   cluster/submit.sh experiments/horse2zebra.yaml --resume        # continue an interrupted run of it
#   cluster/submit.sh experiments/quickstart.yaml --only stripes   # any `python -m orchestrator run` option
#
# Environment:
#   RAY_ADDRESS    the cluster's job server (default http://127.0.0.1:8265, where `ray dashboard
#                  cluster/aws.yaml` or `kubectl port-forward svc/cyclegan-head-svc 8265:8265` put it)
#   RAY_AUTH_MODE  token when the cluster uses token authentication; the default is token when
#                  ~/.ray/auth_token exists or RAY_AUTH_TOKEN is set, disabled otherwise
#   RUNTIME_ENV    the runtime-env file (default cluster/runtime_env.yaml)
#   SUBMISSION_ID  the job's id (default cyclegan-<manifest>-<UTC date and time>); it is what
#                  `ray job logs -f`, `ray job status` and `ray job stop` take
#   NO_WAIT=1      return once the job is submitted instead of following its logs
#   DRY_RUN=1      print the command and exit
#
# Ctrl-C stops following the logs, not the job: stop it with `ray job stop ID`. docs/cluster.md
# has the whole walk-through, from `ray up` to the registered champion.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
    if [[ $# -ge 1 ]]; then usage; exit 0; fi
    usage >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
given="$1"
shift
# The job runs in an upload of the repository root: the manifest must be a file inside it,
# named relative to it (as the job will see it).
if [[ ! -f "$given" ]]; then
    echo "cluster/submit.sh: $given: no such manifest" >&2
    exit 2
fi
manifest="$(realpath --relative-to="$root" "$given")"
if [[ "$manifest" == ../* ]]; then
    echo "cluster/submit.sh: $given is outside $root; the job only sees files under the repository root" >&2
    exit 2
fi

address="${RAY_ADDRESS:-http://127.0.0.1:8265}"
runtime_env="${RUNTIME_ENV:-cluster/runtime_env.yaml}"
name="$(basename "$manifest" .yaml)"
submission_id="${SUBMISSION_ID:-cyclegan-${name//[^A-Za-z0-9_-]/-}-$(date -u +%Y%m%d-%H%M%S)}"
if [[ -z "${RAY_AUTH_MODE:-}" ]]; then
    if [[ -n "${RAY_AUTH_TOKEN:-}" || -n "${RAY_AUTH_TOKEN_PATH:-}" || -f "$HOME/.ray/auth_token" ]]; then
        export RAY_AUTH_MODE=token
    fi
fi

command=(ray job submit --address "$address" --submission-id "$submission_id" --working-dir .
         --runtime-env "$runtime_env")
[[ -n "${NO_WAIT:-}" ]] && command+=(--no-wait)
command+=(-- python -m orchestrator run "$manifest" "$@")

cd "$root"
echo "+ ${command[*]}" >&2
[[ -n "${DRY_RUN:-}" ]] && exit 0
exec "${command[@]}"
