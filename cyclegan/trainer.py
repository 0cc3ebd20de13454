"""The training loop: data, the model's step, logging, sample grids and checkpoints.

Distribution is applied from outside: a caller (the Ray layer) passes `rank`,
`world_size`, a `wrap` function (DDP) and `on_epoch_end` hooks; alone, the
trainer runs on one device exactly like the reference's train.py, only faster.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import run_files
from .config import TrainConfig
from .data import UnalignedDataset, make_loader, to_model_input
from .errors import UserError
from .metric_names import FALLBACK_METRIC, FALLBACK_REASON, LOSS_NAMES, PROTOCOL_KEY
from .model import CycleGAN, resolve_device
from .sources import resolve_dataset
from .sources.layout import check_dataset_root
from .speed import SpeedOptions, apply_speed_options
from .visualize import save_sample_grid, square, write_index

log = logging.getLogger(__name__)

EpochHook = Callable[["Trainer", int, dict], None]


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | None = None,
        wrap: Callable[[nn.Module], nn.Module] | None = None,
        on_epoch_end: list[EpochHook] | None = None,
        resume_state: dict | None = None,
        output_dir: Path | None = None,
        data_root: Path | None = None,
        show_progress: bool = True,
    ):
        self.cfg = cfg
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.device = device or resolve_device(cfg.device)
        self.out_dir = Path(output_dir) if output_dir else Path(cfg.checkpoints_dir) / cfg.name
        self.hooks = list(on_epoch_end or [])
        self.show_progress = show_progress and self.is_main

        self.data_root = (
            Path(data_root)
            if data_root
            else resolve_dataset(
                cfg.dataroot,
                cfg.cache_dir or None,
                endpoint_url=cfg.s3_endpoint_url or None,
                show_progress=self.show_progress,
            )
        )
        check_dataset_root(self.data_root)
        self.dataset = UnalignedDataset(self.data_root, cfg, "train")
        self.loader = make_loader(
            self.dataset,
            cfg,
            rank,
            world_size,
            pin_memory=self.device.type == "cuda",
            cpu_step=self.device.type == "cpu",
        )

        torch.manual_seed(cfg.seed)  # identical initial weights on every worker
        self.model = CycleGAN(cfg, self.device)
        self.speed: SpeedOptions = apply_speed_options(self.model, cfg, self.device, wrap)

        self.start_epoch = cfg.epoch_count
        state = resume_state if resume_state is not None else self._state_to_continue()
        if state is not None:
            self.model.load_state_dict(state["model"])
            ckpt.set_rng_state(state["rng"])
            self.start_epoch = state["epoch"] + 1
        self.sample_A, self.sample_B = self._sample_images()
        self.evaluator = self._make_evaluator()
        self.reference_saved = False  # untranslated.npz, written at this run's first evaluation
        self.history: list[dict] = []

    # -- set-up helpers ----------------------------------------------------------------------
    def _state_to_continue(self) -> dict | None:
        state_file = self.out_dir / run_files.STATE_FILE
        if not self.cfg.continue_train:
            if self.is_main and state_file.exists():
                log.warning(
                    "%s already holds a training run; it will be overwritten (pass "
                    "--continue_train to resume it)",
                    self.out_dir,
                )
            return None
        if state_file.exists():
            state = ckpt.load_training_state(state_file)
            log.info("resuming %s after epoch %d", self.out_dir, state["epoch"])
            return state
        first_network = run_files.network_file(run_files.LATEST, "G_A")
        if (self.out_dir / first_network).exists():
            # Files from the reference implementation: networks only, epoch from --epoch_count.
            for name, net in self.model.nets.items():
                ckpt.load_network(
                    net, self.out_dir / run_files.network_file(run_files.LATEST, name)
                )
            log.warning(
                "continuing from network weights only (no optimizer state) at epoch %d",
                self.cfg.epoch_count,
            )
            return None
        raise UserError(
            f"--continue_train: nothing to continue in {self.out_dir} (no {run_files.STATE_FILE} "
            f"or {first_network})"
        )

    def _make_evaluator(self):
        """The test-split evaluator behind --eval_freq: rank 0 only, and only with testA/ testB/.
        Built now so that missing ground truth or Inception weights fail before any training."""
        if not (self.cfg.eval_freq and self.is_main):
            return None
        if not all((self.data_root / f"test{d}").is_dir() for d in "AB"):
            log.warning(
                "--eval_freq %d: %s has no testA/ testB/; evaluation is skipped",
                self.cfg.eval_freq,
                self.data_root,
            )
            return None
        from .evaluate import Evaluator

        return Evaluator(
            self.data_root,
            self.cfg,
            self.cfg.eval_metric_list(),
            device=self.device,
            inception_weights=self.cfg.inception_weights or None,
            show_progress=self.show_progress,
        )

    def _sample_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed images for the per-epoch grids: from the test split when there is one."""
        phase = "test" if all((self.data_root / f"test{d}").is_dir() for d in "AB") else "train"
        dataset = UnalignedDataset(self.data_root, self.cfg, phase, augment=False)
        n = min(self.cfg.n_samples, len(dataset.A_paths), len(dataset.B_paths))
        items = [dataset[i] for i in range(n)]
        size = self.cfg.crop_size
        a = (
            torch.cat([square(to_model_input(it["A"][None], self.device), size) for it in items])
            if items
            else None
        )
        b = (
            torch.cat([square(to_model_input(it["B"][None], self.device), size) for it in items])
            if items
            else None
        )
        return a, b

    # -- the loop ----------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train from start_epoch to the last epoch; return the last epoch's metrics."""
        cfg = self.cfg
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / run_files.CONFIG_FILE).write_text(json.dumps(cfg.to_record(), indent=2))
            log.info(
                "training %s on %s: %d images A, %d images B, batch %d x %d worker(s) = %d, epochs "
                "%d-%d, %s",
                cfg.name,
                self.device,
                len(self.dataset.A_paths),
                len(self.dataset.B_paths),
                cfg.batch_size,
                self.world_size,
                cfg.batch_size * self.world_size,
                self.start_epoch,
                cfg.total_epochs,
                self.speed,
            )
        if self.is_main and self.start_epoch == 1:
            self._save_samples(0)  # the untrained generators: where a series of grids starts
        metrics: dict = {}
        for epoch in range(self.start_epoch, cfg.total_epochs + 1):
            metrics = self.train_epoch(epoch)
            self.model.step_schedulers(metrics["loss_G"])
            self.end_epoch(epoch, metrics)
        return metrics

    def train_epoch(self, epoch: int) -> dict:
        cfg, model = self.cfg, self.model
        self.loader.sampler.set_epoch(epoch)
        sums = torch.zeros(len(LOSS_NAMES), device=self.device)
        steps, data_time = 0, 0.0
        bar = tqdm(
            total=len(self.loader),
            desc=f"epoch {epoch}/{cfg.total_epochs}",
            unit="it",
            disable=not self.show_progress,
            dynamic_ncols=True,
            leave=False,
        )
        start = waited = time.perf_counter()
        for batch in self.loader:
            data_time += time.perf_counter() - waited
            real_A = to_model_input(batch["A"], self.device, model.memory_format)
            real_B = to_model_input(batch["B"], self.device, model.memory_format)
            losses = model.train_step(real_A, real_B)
            sums += torch.stack([losses[k] for k in LOSS_NAMES])
            steps += 1
            if steps % cfg.print_freq == 0 or steps == len(self.loader):
                current = dict(
                    zip(LOSS_NAMES, torch.stack([losses[k] for k in LOSS_NAMES]).tolist())
                )  # one sync
                self._log_losses(
                    epoch, steps, current, (time.perf_counter() - start) / steps, data_time / steps
                )
                bar.set_postfix(
                    {
                        k: f"{v:.3f}"
                        for k, v in current.items()
                        if k in ("D_A", "G_A", "cycle_A", "D_B", "G_B", "cycle_B")
                    }
                )
            bar.update(1)
            waited = time.perf_counter()
        bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - start
        means = (sums / max(steps, 1)).tolist()
        metrics = {f"loss_{k}": v for k, v in zip(LOSS_NAMES, means)}
        metrics["loss_G"] = sum(
            metrics[f"loss_{k}"] for k in ("G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B")
        )
        # The unweighted cycle-consistency error: comparable across trials with different lambdas.
        weights = [(metrics["loss_cycle_A"], cfg.lambda_A), (metrics["loss_cycle_B"], cfg.lambda_B)]
        metrics["cycle_l1"] = sum(v / w for v, w in weights if w > 0) / max(
            1, sum(w > 0 for _, w in weights)
        )
        metrics.update(
            epoch=epoch,
            lr=model.learning_rate,
            epoch_time_s=elapsed,
            iterations=steps,
            pairs_per_s=steps * cfg.batch_size * self.world_size / max(elapsed, 1e-9),
            data_wait_fraction=data_time / max(elapsed, 1e-9),
        )
        if (
            not self.speed.plain
        ):  # 1 once the fast path failed and the run went on eagerly (the reason beside it)
            metrics[FALLBACK_METRIC] = int(model.fast_path_fallback is not None)
            if model.fast_path_fallback:
                metrics[FALLBACK_REASON] = model.fast_path_fallback
        return metrics

    def end_epoch(self, epoch: int, metrics: dict) -> None:
        """Save (rank 0), then run the hooks (every rank: they may be collective)."""
        cfg = self.cfg
        if self.is_main:
            self.save(epoch)
            grid = self._save_samples(epoch)
            if grid is not None:
                metrics["sample_grid"] = str(grid)
            self._evaluate(epoch, metrics)
            with open(self.out_dir / run_files.METRICS_LOG, "a") as f:
                f.write(json.dumps(metrics) + "\n")
            log.info(
                "epoch %d/%d: %s",
                epoch,
                cfg.total_epochs,
                " ".join(
                    f"{k}={v:.4g}"
                    for k, v in metrics.items()
                    if isinstance(v, float) and "_ci_" not in k
                ),
            )
        self.history.append(metrics)
        for hook in self.hooks:
            hook(self, epoch, metrics)

    def _save_samples(self, epoch: int) -> Path | None:
        """The sample grid of `epoch` (rank 0), or None without sample images."""
        if self.sample_A is None:
            return None
        grid = save_sample_grid(
            self.model,
            self.sample_A,
            self.sample_B,
            self.out_dir / run_files.SAMPLES_DIR / run_files.sample_grid_file(epoch),
        )
        write_index(grid.parent, f"{self.cfg.name}: samples per epoch")
        return grid

    def _evaluate(self, epoch: int, metrics: dict) -> None:
        """Every --eval_freq epochs and at the last one: test-split metrics into `metrics` and the
        loss log, the evidence into evaluation.npz; at the first, the untranslated reference into
        untranslated.npz. Their cost is `eval_time_s`, apart from `epoch_time_s`."""
        if self.evaluator is None or not (
            epoch % self.cfg.eval_freq == 0 or epoch == self.cfg.total_epochs
        ):
            return
        lines = []
        if not self.reference_saved:
            reference, self.reference_saved = self.evaluator.untranslated(), True
            if reference is not None:
                reference.scores.save(self.out_dir / run_files.UNTRANSLATED_FILE)
                lines.append(_evaluation_line(epoch, "untranslated", reference.metrics))
        result = self.evaluator.evaluate(self.model.translate)
        result.scores.save(self.out_dir / run_files.EVALUATION_FILE)
        metrics.update(result.metrics)
        metrics[PROTOCOL_KEY] = result.protocol
        lines.append(_evaluation_line(epoch, "evaluation", result.metrics))
        with open(self.out_dir / run_files.LOSS_LOG, "a") as f:
            f.write("".join(lines))

    def save(self, epoch: int) -> None:
        nets = self.model.nets
        ckpt.save_networks(self.out_dir, run_files.LATEST, nets)
        if epoch % self.cfg.save_epoch_freq == 0 or epoch == self.cfg.total_epochs:
            ckpt.save_networks(self.out_dir, epoch, nets)
        ckpt.save_training_state(
            self.out_dir / run_files.STATE_FILE, self.model.state_dict(), epoch, self.cfg
        )

    def _log_losses(
        self, epoch: int, iters: int, losses: dict, step_time: float, data_time: float
    ) -> None:
        if not self.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        line = (
            f"(epoch: {epoch}, iters: {iters}, time: {step_time:.3f}, data: {data_time:.3f}) "
            + " ".join(f"{k}: {v:.3f}" for k, v in losses.items())
        )
        with open(self.out_dir / run_files.LOSS_LOG, "a") as f:
            f.write(line + "\n")


def _evaluation_line(epoch: int, what: str, metrics: dict) -> str:
    """A loss-log line of evaluation metrics (their intervals left out: the JSON log has them)."""
    shown = " ".join(f"{k}: {v:.4g}" for k, v in metrics.items() if "_ci_" not in k)
    return f"(epoch: {epoch}, {what}) {shown}\n"
