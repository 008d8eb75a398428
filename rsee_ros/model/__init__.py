"""The RSEE model library: pure PyTorch, importable without ROS."""

from rsee_ros.model.backbones import BACKBONES, backbone_spec
from rsee_ros.model.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
)
from rsee_ros.model.config import RSEEConfig
from rsee_ros.model.flops import FlopsTable
from rsee_ros.model.rsee import (
    BatchInference,
    InferenceSettings,
    RSEEModel,
    TrainOutput,
    build_rsee,
    resize_frames,
)
from rsee_ros.model.streaming import FrameStep, StreamingSession

__all__ = [
    "BACKBONES",
    "BatchInference",
    "Checkpoint",
    "CheckpointError",
    "FlopsTable",
    "FrameStep",
    "InferenceSettings",
    "RSEEConfig",
    "RSEEModel",
    "StreamingSession",
    "TrainOutput",
    "backbone_spec",
    "build_rsee",
    "load_checkpoint",
    "resize_frames",
    "resolve_device",
    "save_checkpoint",
]
