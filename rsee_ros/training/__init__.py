"""Training: the three AR-Net/RSEE stages, exit-gate training and cross-resolution distillation."""

from rsee_ros.training.config import STAGES, TrainConfig, load_train_config
from rsee_ros.training.trainer import Trainer

__all__ = ["STAGES", "TrainConfig", "Trainer", "load_train_config"]
