"""Data layer: video decoding, data set readers, sampling, transforms, frame cache, synthetic set,
image message conversion, rosbag2 access (:mod:`~rsee_ros.data.bag`) and the frame sources of
``video_source`` (:mod:`~rsee_ros.data.sources`).

No ROS imports: rosbag2 files are read with the pure-Python ``rosbags`` package. The names below
are imported from their modules on first use, so importing one module of the package (say the
frame sources, for ``video_source``) does not load the others (torch, for the data sets).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module defining it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("CachedDataset", "cache_dataset", "cache_key"), "cache"),
    **dict.fromkeys(
        ("VideoDataset", "probe_records", "read_record_frames", "record_frame_count"), "datasets"
    ),
    **dict.fromkeys(
        ("load_split", "read_class_folders", "read_hmdb51", "read_rosbag", "read_ucf101"),
        "readers",
    ),
    **dict.fromkeys(("BagWindow", "VideoRecord", "VideoSplit"), "records"),
    **dict.fromkeys(
        ("BagLabels", "LabelSegment", "find_label_file", "image_topics", "load_bag_labels",
         "read_bag_frames"),
        "bag",
    ),
    "sample_indices": "sampling",
    **dict.fromkeys(
        ("CLASS_DESCRIPTIONS", "CLASS_NAMES", "SyntheticConfig", "SyntheticInfo"),
        "synthetic",
    ),
    "make_synthetic_dataset": "synthetic_set",
    **dict.fromkeys(
        ("DEFAULT_AUGMENT", "ClipTransform", "TrainAugment", "eval_transform", "train_transform"),
        "transforms",
    ),
    **dict.fromkeys(
        ("VideoDecodeError", "VideoInfo", "count_frames", "iter_frames", "probe_video",
         "read_frames", "read_video"),
        "video",
    ),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

