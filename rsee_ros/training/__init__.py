"""Training: the three AR-Net/RSEE stages, exit-gate training and cross-resolution distillation.

:mod:`~rsee_ros.training.config` holds the typed configuration, :mod:`~rsee_ros.training.stages`
one class per stage, :mod:`~rsee_ros.training.trainer` the trainer that runs them and
:mod:`~rsee_ros.training.losses` the loss terms. This package module imports none of them (nor
torch), so the command line can offer the stage names cheaply.
"""

from rsee_ros.training.stage_names import STAGES

__all__ = ["STAGES"]
