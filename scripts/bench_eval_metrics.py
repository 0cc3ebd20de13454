"""The added evaluation time per epoch of the new metrics (docs/PERFORMANCE.md, issue 27).

Usage: python scripts/bench_eval_metrics.py OUT_DIR IMAGES_PER_DOMAIN SIZE
       OMP_NUM_THREADS=1 python scripts/bench_eval_metrics.py OUT_DIR cpu

The first form: one Evaluator per metric set, evaluated twice (the second is what every later
epoch pays: the real-set features come from the cache), wall-clock seconds. The second: each
metric's CPU seconds per test image on one thread (process time: what a machine shared with other
jobs still measures fairly). Random weights of the real architectures (the time does not depend on
them), so nothing is downloaded. Prints JSON lines.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # conftest's random weights

import timm  # noqa: E402
import torch  # noqa: E402

from conftest import make_random_inception  # noqa: E402
from cyclegan import metrics as M  # noqa: E402
from cyclegan import structure as S  # noqa: E402
from cyclegan.config import TrainConfig  # noqa: E402
from cyclegan.evaluate import Evaluator  # noqa: E402
from cyclegan.sources.synthetic import generate  # noqa: E402

SETS = (["fid", "kid"], ["fid", "kid", "fid_clean", "kid_clean"], ["dino_struct"])


def main(out: Path, n: int, size: int) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    os.environ["CYCLEGAN_CACHE_DIR"] = str(out / "cache")
    root = generate("colorshift", out / "data", n_train=1, n_test=n, size=size, seed=0)
    inception = M.load_inception(make_random_inception(out / M.INCEPTION_FILE), device)
    torch.manual_seed(0)
    vit = out / S.DINO_FILE
    torch.save(timm.create_model(S.ARCHITECTURE, pretrained=False, num_classes=0).state_dict(), vit)
    structure = S.load_structure(vit, device)
    cfg = TrainConfig(load_size=size, crop_size=size, structure_weights=str(vit))
    report = {
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu x{os.cpu_count()}",
        "torch": torch.__version__,
        "timm": timm.__version__,
        "images_per_domain": n,
        "size": size,
    }
    for names in SETS:
        evaluator = Evaluator(
            root, cfg, names, device=device, inception=inception, structure=structure,
            show_progress=False,
        )  # fmt: skip
        first = evaluator.evaluate(lambda x, d: -x).metrics["eval_time_s"]
        later = evaluator.evaluate(lambda x, d: -x).metrics["eval_time_s"]
        report[",".join(names)] = {"first_s": round(first, 2), "later_epochs_s": round(later, 2)}
        print(json.dumps(report), flush=True)


def per_image_cpu(out: Path) -> None:
    import time

    torch.set_num_threads(1)
    inception = M.load_inception(make_random_inception(out / M.INCEPTION_FILE))
    net = timm.create_model(S.ARCHITECTURE, pretrained=False, num_classes=0)
    structure = S.StructureDistance(net, "random")
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)

    def seconds(f) -> float:  # per image, after a warm-up call
        f()
        start = time.process_time()
        f()
        return round((time.process_time() - start) / len(images), 3)

    print(
        json.dumps(
            {
                "fid,kid (Inception, legacy resize)": seconds(lambda: inception(images)),
                "fid_clean,kid_clean (Inception, clean resize)": seconds(
                    lambda: inception.clean(images)
                ),
                "dino_struct (ViT-B/8, input and translation)": seconds(
                    lambda: structure(images, images)
                ),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[2] == "cpu":
        per_image_cpu(Path(sys.argv[1]))
    else:
        main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
