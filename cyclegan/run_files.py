"""The files of a training run's folder (`<checkpoints_dir>/<name>/`), by name.

    latest_net_{G_A,G_B,D_A,D_B}.pth   the networks, plain state_dicts in the reference
    <epoch>_net_*.pth                   implementation's layout (also every --save_epoch_freq)
    latest_state.pt                     the full training state, from which --continue_train resumes
    config.json                         the options (credentials masked)
    metrics.jsonl, loss_log.txt         per-epoch metrics, the reference's loss log
    evaluation.npz                      the last evaluation's evidence (cyclegan.scores)
    untranslated.npz                    the test images scored untranslated: the reference
    samples/epoch_NNN.png, index.html   sample grids

Imports no torch: the Ray driver and the MLflow code name these files too.
"""

from __future__ import annotations

NET_NAMES = ("G_A", "G_B", "D_A", "D_B")  # G_A: A -> B, G_B: B -> A, D_A judges B, D_B judges A
LATEST = "latest"
STATE_FILE = "latest_state.pt"
CONFIG_FILE = "config.json"
METRICS_LOG = "metrics.jsonl"
LOSS_LOG = "loss_log.txt"
SAMPLES_DIR = "samples"
EVALUATION_FILE = "evaluation.npz"
UNTRANSLATED_FILE = "untranslated.npz"


def network_file(prefix: str | int, net: str) -> str:
    """`<prefix>_net_<net>.pth`, e.g. latest_net_G_A.pth or 5_net_D_B.pth."""
    return f"{prefix}_net_{net}.pth"


def sample_grid_file(epoch: int) -> str:
    """The sample grid of `epoch` under SAMPLES_DIR; epoch 0: the untrained generators'."""
    return f"epoch_{epoch:03d}.png"


NETWORK_FILES = tuple(network_file(LATEST, name) for name in NET_NAMES)
CHECKPOINT_FILES = (
    STATE_FILE,
    *NETWORK_FILES,
    CONFIG_FILE,
)  # a checkpoint: what resuming or loading a run reads
