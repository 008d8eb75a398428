"""Moved to :mod:`rsee_ros.data.build`; re-exported for the callers that import it from here."""

from rsee_ros.data.build import DataBundle, DataConfig, build_dataset  # noqa: F401
