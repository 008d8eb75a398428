"""Conversion between ROS image messages and RGB ``uint8`` numpy arrays.

Why not ``cv_bridge``: there is no usable ROS 2 ``cv_bridge`` with the PyPI wheels this package is
developed and tested on (docs: /work/shared/notes/ros2-from-pypi.md), and its Boost/OpenCV C++
build is a heavy dependency for a few lines of numpy. The functions below are duck-typed: they read
only the message fields, so they work on rclpy messages (``data`` is an ``array.array``), on
messages deserialised by the ``rosbags`` package (``data`` is a numpy ``uint8`` array) and on any
object with the same field names (tests).

Errors are reported as :class:`ImageConversionError` with a short ``reason`` code, meant for
counting rejects with :class:`rsee_ros.pipeline.rejects.RejectCounter`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:  # typing only: conversions never need the message packages at run time
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

__all__ = [
    "COMPRESSED_FORMATS",
    "DECODE_FAILED",
    "EMPTY",
    "ENCODINGS",
    "SIZE_MISMATCH",
    "UNSUPPORTED_ENCODING",
    "ImageConversionError",
    "compressed_to_rgb",
    "image_to_rgb",
    "rgb_to_image_msg",
]

# Reason codes of ImageConversionError.
UNSUPPORTED_ENCODING = "unsupported_encoding"
SIZE_MISMATCH = "size_mismatch"  # step or data length disagree with width/height/encoding
EMPTY = "empty"  # zero width/height or no data
DECODE_FAILED = "decode_failed"  # compressed data that OpenCV cannot decode

# encoding -> bytes per pixel (sensor_msgs/image_encodings.hpp names).
ENCODINGS: dict[str, int] = {
    "rgb8": 3,
    "bgr8": 3,
    "rgba8": 4,
    "bgra8": 4,
    "mono8": 1,
    "mono16": 2,
    "yuv422": 2,  # UYVY byte order
    "uyvy": 2,
    "yuyv": 2,
    "yuv422_yuy2": 2,  # YUYV byte order
}
_UYVY = frozenset({"yuv422", "uyvy"})
_YUYV = frozenset({"yuyv", "yuv422_yuy2"})

COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


class ImageConversionError(ValueError):
    """A message that cannot be converted; ``reason`` is one of the module's reason codes."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def _as_uint8_buffer(data: Any) -> np.ndarray:
    """A flat ``uint8`` view of ``data`` (array.array, bytes, numpy array), copying only lists."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain sequence of ints
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def image_to_rgb(msg: Image | Any) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` (or any object with its fields) to ``(H, W, 3)`` RGB uint8.

    ``rgb8`` and ``rgba8`` give a view on ``msg.data`` (no copy; not C-contiguous when rows are
    padded or for ``rgba8``; read-only when ``data`` is ``bytes``). The other encodings give a new
    array. ``mono16`` is scaled to 8 bits by keeping the high byte (``v >> 8``, full range).
    Raises :class:`ImageConversionError`.
    """
    encoding = str(msg.encoding).strip().lower()
    bpp = ENCODINGS.get(encoding)
    if bpp is None:
        raise ImageConversionError(UNSUPPORTED_ENCODING, repr(msg.encoding))
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    buf = _as_uint8_buffer(msg.data)
    if height <= 0 or width <= 0 or buf.size == 0:
        raise ImageConversionError(EMPTY, f"{width}x{height}, {buf.size} bytes")
    row_bytes = width * bpp
    if step < row_bytes:
        raise ImageConversionError(SIZE_MISMATCH, f"step {step} < {width} px * {bpp} B")
    if buf.size != step * height:
        raise ImageConversionError(
            SIZE_MISMATCH, f"{buf.size} bytes of data, expected step {step} * height {height}"
        )
    if bpp == 2 and encoding != "mono16" and width % 2:
        raise ImageConversionError(SIZE_MISMATCH, f"odd width {width} for {encoding}")

    # Rows without the padding: a strided view, never a copy.
    rows = buf.reshape(height, step)[:, :row_bytes]
    if encoding == "rgb8":
        return rows.reshape(height, width, 3)
    if encoding == "rgba8":
        return rows.reshape(height, width, 4)[:, :, :3]
    if encoding == "bgr8":
        # A [..., ::-1] view would have negative strides, which torch.from_numpy rejects.
        return cv2.cvtColor(rows.reshape(height, width, 3), cv2.COLOR_BGR2RGB)
    if encoding == "bgra8":
        return cv2.cvtColor(rows.reshape(height, width, 4), cv2.COLOR_BGRA2RGB)
    if encoding == "mono8":
        return cv2.cvtColor(rows, cv2.COLOR_GRAY2RGB)
    if encoding == "mono16":
        mono = rows.view(">u2" if msg.is_bigendian else "<u2")
        return cv2.cvtColor((mono >> 8).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_YUV2RGB_UYVY if encoding in _UYVY else cv2.COLOR_YUV2RGB_YUY2
    return cv2.cvtColor(rows.reshape(height, width, 2), code)


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to ``(H, W, 3)`` RGB uint8.

    ``msg.format`` may be empty, ``"jpeg"``/``"png"`` or image_transport's
    ``"<encoding>; jpeg compressed bgr8"`` form; ``compressedDepth`` and other codecs are
    rejected as ``unsupported_encoding``. Raises :class:`ImageConversionError`.
    """
    fmt = str(msg.format).strip().lower()
    if "compresseddepth" in fmt or (fmt and not any(f in fmt for f in COMPRESSED_FORMATS)):
        raise ImageConversionError(UNSUPPORTED_ENCODING, repr(msg.format))
    buf = _as_uint8_buffer(msg.data)
    if buf.size == 0:
        raise ImageConversionError(EMPTY, "no data")
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageConversionError(DECODE_FAILED, str(exc).strip().splitlines()[-1]) from None
    if bgr is None or bgr.size == 0:
        raise ImageConversionError(DECODE_FAILED, f"{buf.size} bytes, format {msg.format!r}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_image_msg(
    rgb: np.ndarray,
    encoding: str = "rgb8",
    header: Header | None = None,
    msg_cls: type | None = None,
) -> Image:
    """Build a ``sensor_msgs/Image`` from an ``(H, W, 3)`` RGB uint8 array.

    ``encoding`` is any of :data:`ENCODINGS` (the array is converted; YUV output needs OpenCV
    >= 4.7). ``header`` is used as is when given. ``msg_cls`` defaults to
    ``sensor_msgs.msg.Image``, imported lazily so this module loads without ROS.
    ``data`` is assigned as ``bytes`` (assigning the ndarray is about 40x slower in rclpy).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.size == 0:
        raise ImageConversionError(
            SIZE_MISMATCH, f"expected non-empty (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}"
        )
    encoding = encoding.strip().lower()
    if encoding not in ENCODINGS:
        raise ImageConversionError(UNSUPPORTED_ENCODING, repr(encoding))
    height, width = rgb.shape[:2]
    if encoding == "rgb8":
        out = rgb
    elif encoding == "bgr8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding == "rgba8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    elif encoding == "bgra8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    elif encoding == "mono8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif encoding == "mono16":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * np.uint16(257)
    else:
        name = "COLOR_RGB2YUV_UYVY" if encoding in _UYVY else "COLOR_RGB2YUV_YUY2"
        if not hasattr(cv2, name) or width % 2:
            raise ImageConversionError(UNSUPPORTED_ENCODING, f"{encoding} output, width {width}")
        out = cv2.cvtColor(rgb, getattr(cv2, name))
    if msg_cls is None:
        from sensor_msgs.msg import Image

        msg_cls = Image
    msg = msg_cls()
    if header is not None:
        msg.header = header
    msg.height = height
    msg.width = width
    msg.encoding = encoding
    msg.is_bigendian = 1 if encoding == "mono16" and sys.byteorder == "big" else 0  # native u16
    msg.step = width * ENCODINGS[encoding]
    msg.data = np.ascontiguousarray(out).tobytes()
    return msg
