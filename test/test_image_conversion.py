"""Tests of rsee_ros.data.image_conversion and rsee_ros.pipeline.rejects."""

from __future__ import annotations

import array
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from rsee_ros.data.image_conversion import (
    DECODE_FAILED,
    EMPTY,
    ENCODINGS,
    SIZE_MISMATCH,
    UNSUPPORTED_ENCODING,
    ImageConversionError,
    check_frame_size,
    compressed_size,
    compressed_to_rgb,
    image_to_rgb,
    rgb_to_image_msg,
)
from rsee_ros.pipeline.rejects import RejectCounter

REPO = Path(__file__).resolve().parents[1]
H, W = 6, 8
YUV = ("yuv422", "uyvy", "yuyv", "yuv422_yuy2")


def _rgb(seed: int = 0, pairs: bool = False) -> np.ndarray:
    """A random RGB image; with ``pairs`` each horizontal pixel pair has one colour (no chroma
    subsampling loss in YUV 4:2:2)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    if pairs:
        img[:, 1::2] = img[:, 0::2]
    return img


def _raw(rgb: np.ndarray, encoding: str, big_endian: bool = False) -> tuple[np.ndarray, bool]:
    """Pixel array of ``rgb`` in ``encoding``, made with cv2 directly (the reference)."""
    if encoding == "rgb8":
        return rgb, False
    if encoding == "bgr8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), False
    if encoding == "rgba8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA), False
    if encoding == "bgra8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA), False
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if encoding == "mono8":
        return gray, False
    if encoding == "mono16":
        return (gray.astype(np.uint16) * 257).astype(">u2" if big_endian else "<u2"), big_endian
    if encoding in ("yuv422", "uyvy"):
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY), False
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUY2), False


def _expected(rgb: np.ndarray, encoding: str) -> np.ndarray:
    if encoding in ("mono8", "mono16"):
        return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return rgb


def _msg(raw: np.ndarray, encoding: str, pad: int = 0, big: bool = False, data_type=bytes):
    """A duck-typed Image with ``pad`` garbage bytes at the end of each row."""
    h, w = raw.shape[:2]
    rows = np.ascontiguousarray(raw).view(np.uint8).reshape(h, -1)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    data: object = rows.tobytes()
    if data_type is np.ndarray:  # what rosbags gives
        data = rows.reshape(-1).copy()
    elif data_type is array.array:  # what rclpy gives
        data = array.array("B", rows.tobytes())
    return SimpleNamespace(
        height=h, width=w, encoding=encoding, is_bigendian=int(big), step=rows.shape[1], data=data
    )


def _close(a: np.ndarray, b: np.ndarray, encoding: str) -> None:
    assert a.shape == b.shape and a.dtype == np.uint8
    tol = 3 if encoding in YUV else 0  # YUV is lossy (rounding of Y/U/V)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= tol, encoding


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("data_type", [bytes, array.array, np.ndarray])
def test_decode_every_encoding(encoding: str, pad: int, data_type: type) -> None:
    rgb = _rgb(1, pairs=encoding in YUV)
    raw, big = _raw(rgb, encoding)
    out = image_to_rgb(_msg(raw, encoding, pad, big, data_type))
    _close(out, _expected(rgb, encoding), encoding)


def test_yuv_matches_cv2_exactly_and_orderings_agree() -> None:
    rgb = _rgb(2)  # not pair-constant: compare with cv2's own decoding
    uyvy = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY)
    ref = cv2.cvtColor(uyvy, cv2.COLOR_YUV2RGB_UYVY)
    yuyv = uyvy[..., ::-1].copy()  # UYVY -> YUYV: swap the two bytes of every pixel
    for enc in ("yuv422", "uyvy"):
        np.testing.assert_array_equal(image_to_rgb(_msg(uyvy, enc)), ref)
    for enc in ("yuyv", "yuv422_yuy2"):
        np.testing.assert_array_equal(image_to_rgb(_msg(yuyv, enc)), ref)


def test_mono16_big_endian_and_scaling() -> None:
    rgb = _rgb(3)
    raw, big = _raw(rgb, "mono16", big_endian=True)
    _close(image_to_rgb(_msg(raw, "mono16", 2, big)), _expected(rgb, "mono16"), "mono16")
    ramp = np.array([[0, 255, 256, 65535]], dtype="<u2")
    out = image_to_rgb(_msg(ramp, "mono16"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 255])


def test_rgb8_is_zero_copy_view() -> None:
    rgb = _rgb(4)
    for pad in (0, 5):
        msg = _msg(rgb, "rgb8", pad, data_type=array.array)
        out = image_to_rgb(msg)
        assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
        np.testing.assert_array_equal(out, rgb)
    msg = _msg(cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA), "rgba8", data_type=np.ndarray)
    assert np.shares_memory(image_to_rgb(msg), msg.data)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_round_trip_through_rclpy_message(encoding: str) -> None:
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    rgb = _rgb(5, pairs=encoding in YUV)
    header = Header(frame_id="cam")
    header.stamp.sec = 7
    msg = rgb_to_image_msg(rgb, encoding, header=header)
    assert isinstance(msg, Image) and isinstance(msg.data, array.array)
    assert (msg.height, msg.width, msg.encoding) == (H, W, encoding)
    assert msg.step == W * ENCODINGS[encoding] and len(msg.data) == msg.step * H
    assert msg.header.frame_id == "cam" and msg.header.stamp.sec == 7
    _close(image_to_rgb(msg), _expected(rgb, encoding), encoding)


def test_rgb_to_image_msg_with_duck_class_and_bad_input() -> None:
    msg = rgb_to_image_msg(_rgb(6), msg_cls=SimpleNamespace)
    assert isinstance(msg.data, bytes) and msg.encoding == "rgb8"
    with pytest.raises(ImageConversionError) as e:
        rgb_to_image_msg(np.zeros((4, 4), np.uint8))
    assert e.value.reason == SIZE_MISMATCH
    with pytest.raises(ImageConversionError) as e:
        rgb_to_image_msg(_rgb(6), "32FC1")
    assert e.value.reason == UNSUPPORTED_ENCODING


def _bad(**changes: object) -> SimpleNamespace:
    msg = _msg(_rgb(7), "rgb8")
    for k, v in changes.items():
        setattr(msg, k, v)
    return msg


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (_bad(encoding="32FC1"), UNSUPPORTED_ENCODING),
        (_bad(encoding="bayer_rggb8"), UNSUPPORTED_ENCODING),
        (_bad(encoding=""), UNSUPPORTED_ENCODING),
        (_bad(step=W * 3 - 1), SIZE_MISMATCH),  # step shorter than a row
        (_bad(step=W * 3 + 4), SIZE_MISMATCH),  # step that the data does not have
        (_bad(data=b"\0" * (H * W * 3 - 1)), SIZE_MISMATCH),  # truncated
        (_bad(data=b"\0" * (H * W * 3 + 1)), SIZE_MISMATCH),  # too long
        (_bad(width=W + 1), SIZE_MISMATCH),
        (_bad(data=b""), EMPTY),
        (_bad(height=0, width=0, step=0, data=b""), EMPTY),
        (_bad(height=0), EMPTY),
        (_msg(np.zeros((2, 3, 2), np.uint8), "yuv422"), SIZE_MISMATCH),  # odd YUV width
    ],
)
def test_bad_images_raise_reason(msg: SimpleNamespace, reason: str) -> None:
    with pytest.raises(ImageConversionError) as e:
        image_to_rgb(msg)
    assert e.value.reason == reason
    assert isinstance(e.value, ValueError)


def _compressed(data: bytes, fmt: str) -> SimpleNamespace:
    return SimpleNamespace(format=fmt, data=array.array("B", data))


def test_compressed_jpeg_and_png() -> None:
    rgb = _rgb(8)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    png = cv2.imencode(".png", bgr)[1].tobytes()
    jpg = cv2.imencode(".jpg", bgr)[1].tobytes()
    for fmt in ("png", "", "rgb8; png compressed bgr8", "PNG"):
        np.testing.assert_array_equal(compressed_to_rgb(_compressed(png, fmt)), rgb)
    decoded = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
    ref = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    for fmt in ("jpeg", "rgb8; jpeg compressed bgr8", "jpg"):
        np.testing.assert_array_equal(compressed_to_rgb(_compressed(jpg, fmt)), ref)
    # rosbags gives a numpy array
    msg = SimpleNamespace(format="png", data=np.frombuffer(png, np.uint8).copy())
    np.testing.assert_array_equal(compressed_to_rgb(msg), rgb)
    gray_png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))[1].tobytes()
    assert compressed_to_rgb(_compressed(gray_png, "png")).shape == (H, W, 3)


@pytest.mark.parametrize(
    ("data", "fmt", "reason"),
    [
        (b"", "jpeg", EMPTY),
        (b"not an image at all", "jpeg", DECODE_FAILED),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg", DECODE_FAILED),  # truncated jpeg header
        (b"\x89PNG\r\n\x1a\n", "png", DECODE_FAILED),  # truncated png
        (b"\x00" * 12 + b"\x89PNG", "16UC1; compressedDepth png", UNSUPPORTED_ENCODING),
        (b"\x00\x00\x00\x01", "h264", UNSUPPORTED_ENCODING),
    ],
)
def test_bad_compressed_raise_reason(data: bytes, fmt: str, reason: str) -> None:
    with pytest.raises(ImageConversionError) as e:
        compressed_to_rgb(_compressed(data, fmt))
    assert e.value.reason == reason


def test_module_imports_without_ros_message_packages() -> None:
    code = (
        "import sys; sys.modules['sensor_msgs'] = None; sys.modules['std_msgs'] = None\n"
        "import rsee_ros.data.image_conversion as m, numpy as np, types\n"
        "msg = m.rgb_to_image_msg(np.zeros((2, 2, 3), np.uint8), msg_cls=types.SimpleNamespace)\n"
        "assert m.image_to_rgb(msg).shape == (2, 2, 3)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


# RejectCounter ----------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_reject_counter_throttles_per_reason() -> None:
    clock, lines = _Clock(), []
    rc = RejectCounter(lines.append, period_s=5.0, clock=clock)
    assert rc.reject("size_mismatch", "640x480") is True
    for _ in range(9):
        clock.t += 0.1
        assert rc.reject("size_mismatch") is False
    assert rc.reject("empty") is True  # another reason is not throttled by the first
    assert len(lines) == 2 and "size_mismatch" in lines[0] and "640x480" in lines[0]
    clock.t += 5.0
    assert rc.reject("size_mismatch") is True
    assert "11 dropped" in lines[-1] and "10 in the last" in lines[-1]
    assert rc.counts == {"size_mismatch": 11, "empty": 1}
    assert rc.count("size_mismatch") == 11 and rc.total == 12 and rc.count("other") == 0
    rc.reset()
    assert rc.total == 0 and rc.reject("size_mismatch") is True


def test_reject_counter_sinks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("rsee_test_rejects")
    rc = RejectCounter(logger, period_s=60.0, what="message")
    with caplog.at_level(logging.WARNING, logger="rsee_test_rejects"):
        rc.reject("empty")
        rc.reject("empty")
    assert [r.getMessage() for r in caplog.records] == [
        "dropped message (empty) [1 dropped for this reason so far]"
    ]
    silent = RejectCounter(None)
    assert silent.reject("x") is True and silent.count("x") == 1
    zero = RejectCounter(None, period_s=0.0)
    assert zero.reject("x") and zero.reject("x")  # period 0: every reject logs
    with pytest.raises(TypeError):
        RejectCounter(42)  # type: ignore[arg-type]


def test_reject_counter_with_rclpy_logger() -> None:
    import rclpy.logging

    rc = RejectCounter(rclpy.logging.get_logger("rsee_test_rejects"), period_s=1.0)
    assert rc.reject("unsupported_encoding", "'32FC1'") is True


BOMB = """
import struct, sys, zlib
from types import SimpleNamespace
import numpy as np
from rsee_ros.data.image_conversion import ImageConversionError, compressed_to_rgb, image_to_rgb

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

side = 16384  # a valid grayscale PNG of 16384 x 16384 zeros: ~260 KB, 268 MB decoded
z = zlib.compressobj(9)
row = bytes(side + 1)
idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
       + chunk(b"IEND", b""))
strip = SimpleNamespace(height=1, width=100_000, encoding="bgr8", step=300_000, is_bigendian=0,
                        data=bytes(300_000))
reasons = []
for convert, msg in ((compressed_to_rgb, SimpleNamespace(format="png", data=png)),
                     (image_to_rgb, strip)):
    try:
        convert(msg)
    except ImageConversionError as exc:
        reasons.append(exc.reason)
# VmHWM: this process's own peak (ru_maxrss would include the parent's, across exec)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(len(png), reasons, hwm // 1024)
"""


def test_huge_and_degenerate_frames_are_refused_before_any_pixel_work() -> None:
    """A 261 KB PNG that decodes to 16384 x 16384 and a 1 x 100000 bgr8 strip (12.8 GB once its
    short side is resized for the model) are refused from their sizes, in bounded memory."""
    out = subprocess.run([sys.executable, "-c", BOMB], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True).stdout.split(" ", 1)
    size, rest = int(out[0]), out[1]
    reasons, peak_mb = rest.rsplit(" ", 1)
    assert size < 400_000
    assert reasons == "['too_large', 'degenerate']"
    assert int(peak_mb) < 300  # interpreter, numpy and OpenCV; no image was ever allocated


def test_compressed_size_reads_png_and_jpeg_headers() -> None:
    rgb = np.zeros((30, 50, 3), np.uint8)
    for ext in (".png", ".jpg"):
        ok, data = cv2.imencode(ext, rgb)
        assert ok and compressed_size(data.reshape(-1)) == (50, 30)
    assert compressed_size(np.frombuffer(b"GIF89a....", np.uint8)) is None
    with pytest.raises(ImageConversionError, match="decode_failed"):
        compressed_to_rgb(SimpleNamespace(format="", data=b"GIF89a" + bytes(100)))
    check_frame_size(3840, 2160)  # a 4K camera passes
    with pytest.raises(ImageConversionError, match="too_large"):
        check_frame_size(3840, 2160, max_pixels=1000)
