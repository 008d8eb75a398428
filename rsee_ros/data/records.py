"""Video records and train/test splits: what every data set reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BagWindow:
    """A run of consecutive image messages of one rosbag2 topic, used as one video."""

    topic: str
    start_ns: int  # log time of the window's first frame
    stop_ns: int  # log time of the window's last frame
    num_frames: int
    skip: int = 0  # messages stamped start_ns that precede the window's first frame


@dataclass(frozen=True)
class VideoRecord:
    """One labelled video: a file, a frame folder, or (``window`` set) a rosbag2 window."""

    path: str
    label: int
    name: str
    window: BagWindow | None = None


@dataclass
class VideoSplit:
    """Class names (index = label), the train and test records of one split, and the listed
    videos that were not found on disk."""

    classes: list[str]
    train: list[VideoRecord] = field(default_factory=list)
    test: list[VideoRecord] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def subset(self, name: str) -> list[VideoRecord]:
        """The records of ``"train"``, ``"test"`` or ``"all"``."""
        if name == "train":
            return self.train
        if name == "test":
            return self.test
        if name == "all":
            return self.train + self.test
        raise ValueError(f"unknown subset {name!r} (train, test or all)")
