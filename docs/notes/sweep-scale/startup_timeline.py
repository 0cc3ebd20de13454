"""Scratch: a start-up timeline of a kept bench run (scripts/bench_sweep_scale.py --keep DIR --trace-torch --json J).

    python docs/notes/sweep-scale/startup_timeline.py J.json DIR/tasksN [index of the run in J]
"""
import glob
import json
import os
import re
import sqlite3
import sys
from datetime import datetime

report = json.load(open(sys.argv[1]))[int(sys.argv[3]) if len(sys.argv) > 3 else 0]
base = sys.argv[2]
t0 = report["started_at"]
logs = glob.glob(f"{base}/ray/ray/session_2*/logs")[0]
events = []   # (t, pid, what)
titles = {p["pid"]: p["titles"][-1][1] for p in report["processes"] if p["titles"]}


def ts(text):
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


for path in glob.glob(f"{logs}/python-core-*.log"):
    pid = int(path.rsplit("_", 1)[-1].split(".")[0])
    lines = open(path).read().splitlines()
    m = re.match(r"\[(\S+ \S+) ", lines[0]) if lines else None
    if m:
        events.append((ts(m.group(1)), pid, "core worker up"))
    for line in lines:
        if "Creating actor" in line or "Finished executing task" in line and "__init__" in line:
            events.append((ts(re.match(r"\[(\S+ \S+) ", line).group(1)), pid, line.split("] ", 1)[1][:70]))
for path in glob.glob(f"{logs}/train/ray-train-sys-*.log"):
    for line in open(path):
        row = json.loads(line)
        if row["levelname"] in ("INFO", "DEBUG") and any(k in row["message"] for k in (
                "Requesting resources", "PlacementGroupCleaner launched", "Attempting to start", "Started training worker group",
                "Setting up process group", "Launching training function", "No checkpoint manager snapshot")):
            events.append((row["timestamp_ns"] / 1e9, row["process"], row["message"][:80]))
for path in glob.glob(f"{base}/hook/stacks/*.txt"):
    pid = int(os.path.basename(path).split(".")[0])
    start = float(open(path).readline())
    events.append((start, pid, "import torch starts"))
    if os.path.exists(path + ".end"):
        events.append((float(open(path + ".end").read()), pid, "import torch ends"))
with sqlite3.connect(f"{base}/mlflow.db") as con:
    for name, start in con.execute("SELECT name, start_time FROM runs"):
        events.append((start / 1000, 0, f"MLflow run created: {name}"))
for e in report["first_epochs"]:
    events.append((t0 + e["first_epoch_start_s"], 0, f"epoch 1 starts ({e['trial']})"))
    events.append((t0 + e["first_epoch_end_s"], 0, f"epoch 1 ends ({e['trial']})"))
for p in report["processes"]:
    for t, title in p["titles"]:
        if title.startswith("ray::") and not title.endswith((".get", "IDLE")):
            events.append((t0 + t, p["pid"], f"(sampled) title {title[:50]}"))
for t, pid, what in sorted(events):
    print(f"{t - t0:7.2f}  {pid:>6} {titles.get(pid, '')[:28]:<28} {what}")
