"""Data layer: video decoding, data set readers, sampling, transforms, frame cache, synthetic set.

No ROS imports: rosbag2 files are read with the pure-Python ``rosbags`` package.
"""

from rsee_ros.data.cache import CachedDataset, cache_dataset, cache_key
from rsee_ros.data.datasets import (
    VideoDataset,
    probe_records,
    read_record_frames,
    record_frame_count,
)
from rsee_ros.data.readers import (
    load_split,
    read_class_folders,
    read_hmdb51,
    read_ucf101,
)
from rsee_ros.data.records import BagWindow, VideoRecord, VideoSplit
from rsee_ros.data.rosbag import (
    BagLabels,
    LabelSegment,
    find_label_file,
    image_topics,
    load_bag_labels,
    read_bag_frames,
    read_rosbag,
)
from rsee_ros.data.sampling import sample_indices
from rsee_ros.data.synthetic import (
    CLASS_DESCRIPTIONS,
    CLASS_NAMES,
    SyntheticConfig,
    SyntheticInfo,
    make_synthetic_dataset,
)
from rsee_ros.data.transforms import (
    DEFAULT_AUGMENT,
    ClipTransform,
    TrainAugment,
    eval_transform,
    train_transform,
)
from rsee_ros.data.video import (
    VideoDecodeError,
    VideoInfo,
    count_frames,
    iter_frames,
    probe_video,
    read_frames,
    read_video,
)

__all__ = [
    "CLASS_DESCRIPTIONS",
    "CLASS_NAMES",
    "DEFAULT_AUGMENT",
    "BagLabels",
    "BagWindow",
    "CachedDataset",
    "ClipTransform",
    "LabelSegment",
    "SyntheticConfig",
    "SyntheticInfo",
    "TrainAugment",
    "VideoDataset",
    "VideoDecodeError",
    "VideoInfo",
    "VideoRecord",
    "VideoSplit",
    "cache_dataset",
    "cache_key",
    "count_frames",
    "find_label_file",
    "image_topics",
    "iter_frames",
    "load_bag_labels",
    "load_split",
    "make_synthetic_dataset",
    "probe_records",
    "probe_video",
    "read_bag_frames",
    "read_class_folders",
    "read_frames",
    "read_hmdb51",
    "read_record_frames",
    "read_rosbag",
    "read_ucf101",
    "read_video",
    "record_frame_count",
    "sample_indices",
    "eval_transform",
    "train_transform",
]
