"""Conversion between ROS image messages and RGB ``uint8`` numpy arrays.

Why not ``cv_bridge``: there is no usable ROS 2 ``cv_bridge`` with the PyPI wheels this package is
developed and tested on (docs: /work/shared/notes/ros2-from-pypi.md), and its Boost/OpenCV C++
build is a heavy dependency for a few lines of numpy. The functions below are duck-typed: they read
only the message fields, so they work on rclpy messages (``data`` is an ``array.array``), on
messages deserialised by the ``rosbags`` package (``data`` is a numpy ``uint8`` array) and on any
object with the same field names (tests).

Errors are reported as :class:`ImageConversionError` with a short ``reason`` code, meant for
counting rejects with :class:`rsee_ros.pipeline.rejects.RejectCounter`.

The work per message is bounded before any pixel is touched: a frame of more than ``max_pixels``
(default :data:`DEFAULT_MAX_PIXELS`, a 4K camera with room to spare) is refused as
``too_large``, and one whose sides differ by more than :data:`MAX_ASPECT` times as
``degenerate`` (the model sees a centre square of the frame: from a 1 x 100000 strip there is
none to take, and resizing its short side to the model's input would cost gigabytes).
Compressed images are checked from their PNG or JPEG header, before decoding: a 261 KB PNG can
decode to 16384 x 16384 pixels (1 GB).

A PNG is also checked for being whole before it is decoded (every chunk complete, the CRC of
every critical chunk right, an IEND chunk): a broken one is ``decode_failed`` without reaching
OpenCV, because what OpenCV's PNG decoder says of it bypasses the caller's (throttled) reject
warnings. It logs a cut PNG through its own logger (``[ WARN:0@...] ... PNG input buffer is
incomplete``), and it creates libpng's reader without error or warning callbacks
(``png_create_read_struct(..., 0, 0, 0)`` in OpenCV's ``grfmt_png.cpp``), so libpng's default
handlers print ``libpng error: IDAT: CRC error`` and the like straight to the C ``stderr``,
which no Python or OpenCV setting reaches. A PNG whose chunks are whole but whose compressed
data is invalid (a crafted file or a broken encoder) still gets libpng's line: finding that
before decoding means inflating the image twice, and silencing it means redirecting file
descriptor 2 around the call; neither is done.
"""

from __future__ import annotations

import struct
import sys
import zlib
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:  # typing only: conversions never need the message packages at run time
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

__all__ = [
    "COMPRESSED_FORMATS",
    "DECODE_FAILED",
    "DEFAULT_MAX_PIXELS",
    "DEGENERATE",
    "EMPTY",
    "ENCODINGS",
    "MAX_ASPECT",
    "TOO_LARGE",
    "SIZE_MISMATCH",
    "UNSUPPORTED_ENCODING",
    "ImageConversionError",
    "check_frame_size",
    "compressed_size",
    "compressed_to_rgb",
    "image_to_rgb",
    "rgb_to_image_msg",
]

# Reason codes of ImageConversionError.
UNSUPPORTED_ENCODING = "unsupported_encoding"
SIZE_MISMATCH = "size_mismatch"  # step or data length disagree with width/height/encoding
EMPTY = "empty"  # zero width/height or no data
DECODE_FAILED = "decode_failed"  # compressed data that OpenCV cannot decode
TOO_LARGE = "too_large"  # more pixels than allowed (max_pixels)
DEGENERATE = "degenerate"  # too thin, or too elongated, for the model's centre crop

DEFAULT_MAX_PIXELS = 16_777_216
"""4096 x 4096: a 4K camera (3840 x 2160, 8.3 MP) and then some."""
MAX_ASPECT = 10.0
"""Longer side / shorter side above which a frame is refused (panoramas are 2-4)."""

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
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


def check_frame_size(width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse a ``width`` x ``height`` frame that is too large or degenerate (see the module
    docstring) with :class:`ImageConversionError`."""
    if width <= 0 or height <= 0:
        raise ImageConversionError(EMPTY, f"{width}x{height}")
    if width * height > max_pixels:
        raise ImageConversionError(
            TOO_LARGE, f"{width}x{height} = {width * height} pixels > max {max_pixels}")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageConversionError(
            DEGENERATE, f"{width}x{height}: sides more than {MAX_ASPECT:g}x apart")


def compressed_size(buf: np.ndarray) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG or JPEG header, without decoding; None if neither."""
    head = bytes(buf[:32])
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if not head.startswith(b"\xff\xd8"):
        return None
    data = memoryview(buf)
    i, n = 2, len(data)
    while i + 4 <= n:  # walk the JPEG segments up to the first start-of-frame marker
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            if i + 9 > n:
                return None
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            return width, height
        i += 2 + length
    return None


def _png_problem(buf: np.ndarray) -> str | None:
    """What is broken in the PNG ``buf`` (a chunk cut short, a critical chunk failing its CRC,
    no IEND chunk), or None when it is whole; see the module docstring for why."""
    data = memoryview(buf)
    pos, size = len(_PNG_SIGNATURE), len(data)
    while pos + 12 <= size:
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = bytes(data[pos + 4:pos + 8])
        name = kind.decode("ascii", "replace")
        end = pos + 12 + length
        if end > size:
            return f"cut short: its {name} chunk at byte {pos} needs {end} bytes"
        critical = not kind[0] & 0x20  # an upper-case first letter
        stored_crc = int.from_bytes(data[end - 4:end], "big")
        if critical and zlib.crc32(data[pos + 4:end - 4]) != stored_crc:
            return f"its {name} chunk at byte {pos} fails its CRC (corrupted)"
        if kind == b"IEND":
            return None
        pos = end
    return "cut short: no IEND chunk"


def image_to_rgb(msg: Image | Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` (or any object with its fields) to ``(H, W, 3)`` RGB uint8.

    ``rgb8`` and ``rgba8`` give a view on ``msg.data`` (no copy; not C-contiguous when rows are
    padded or for ``rgba8``; read-only when ``data`` is ``bytes``). The other encodings give a new
    array. ``mono16`` is scaled to 8 bits by keeping the high byte (``v >> 8``, full range).
    Raises :class:`ImageConversionError` (``too_large`` / ``degenerate`` before any pixel is
    read, see :func:`check_frame_size`).
    """
    encoding = str(msg.encoding).strip().lower()
    bpp = ENCODINGS.get(encoding)
    if bpp is None:
        raise ImageConversionError(UNSUPPORTED_ENCODING, repr(msg.encoding))
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    buf = _as_uint8_buffer(msg.data)
    if height <= 0 or width <= 0 or buf.size == 0:
        raise ImageConversionError(EMPTY, f"{width}x{height}, {buf.size} bytes")
    check_frame_size(width, height, max_pixels)
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


def compressed_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to ``(H, W, 3)`` RGB uint8.

    ``msg.format`` may be empty, ``"jpeg"``/``"png"`` or image_transport's
    ``"<encoding>; jpeg compressed bgr8"`` form; ``compressedDepth`` and other codecs are
    rejected as ``unsupported_encoding``. The size is checked from the header before decoding
    (data with no PNG or JPEG header is ``decode_failed``), and a PNG for being whole
    (:func:`_png_problem`; a broken one is ``decode_failed``). Raises
    :class:`ImageConversionError`.
    """
    fmt = str(msg.format).strip().lower()
    if "compresseddepth" in fmt or (fmt and not any(f in fmt for f in COMPRESSED_FORMATS)):
        raise ImageConversionError(UNSUPPORTED_ENCODING, repr(msg.format))
    buf = _as_uint8_buffer(msg.data)
    if buf.size == 0:
        raise ImageConversionError(EMPTY, "no data")
    size = compressed_size(buf)
    if size is None:
        raise ImageConversionError(DECODE_FAILED, f"{buf.size} bytes with no PNG or JPEG header")
    check_frame_size(*size, max_pixels)
    broken = _png_problem(buf) if bytes(buf[:8]) == _PNG_SIGNATURE else None
    if broken:
        raise ImageConversionError(DECODE_FAILED, f"PNG of {buf.size} bytes {broken}")
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
