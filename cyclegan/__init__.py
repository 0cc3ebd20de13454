"""CycleGAN (Zhu, Park, Isola, Efros, ICCV 2017) in plain PyTorch: networks, losses,
image pool, schedules, data, training loop and checkpoint I/O. No Ray, no MLflow."""

from .checkpoint import load_generator
from .config import TrainConfig
from .errors import UserError
from .model import CycleGAN
from .trainer import Trainer

__all__ = ["CycleGAN", "TrainConfig", "Trainer", "UserError", "load_generator"]
__version__ = "0.1.0"
