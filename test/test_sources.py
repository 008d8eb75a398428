"""Tests of the frame sources (rsee_ros.data.sources): plain Python, no ROS needed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from rsee_ros.data import video as video_mod
from rsee_ros.data.sources import (
    FrameSource,
    ImageFolderSource,
    RosbagSource,
    SourceError,
    SyntheticClips,
    VideoFileSource,
    detect_source_type,
)
from rsee_ros.data.synthetic import CLASS_NAMES
from rsee_ros.pipeline.rejects import RejectCounter
from rsee_ros.resources import DEMO_LABELS, load_clip_labels

REPO = Path(__file__).resolve().parents[1]


# Fixtures: files of each source kind -------------------------------------------------------------


def _frame(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (i * 40) % 256
    img[: h // 2, : w // 2, 1] = 200
    return img


def _write_video(path: Path, n: int = 10, fps: int = 25) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(_frame(i), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _write_bag(path: Path) -> Path:
    """/cam/raw (3 rgb8 Images), /cam/compressed (3 PNGs and 1 broken one) and /cam/junk (Image
    messages that do not deserialise)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.LATEST)
    img_t, comp_t = ts.types["sensor_msgs/msg/Image"], ts.types["sensor_msgs/msg/CompressedImage"]
    header_t, time_t = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        raw = writer.add_connection("/cam/raw", img_t.__msgtype__, typestore=ts)
        comp = writer.add_connection("/cam/compressed", comp_t.__msgtype__, typestore=ts)
        junk = writer.add_connection("/cam/junk", img_t.__msgtype__, typestore=ts)
        for i in range(4):
            sec, nsec = 10 + i // 2, (i % 2) * 500_000_000
            header = header_t(stamp=time_t(sec=sec, nanosec=nsec), frame_id="bag_cam")
            t_ns = sec * 10**9 + nsec
            if i < 3:
                rgb = _frame(i)
                msg = img_t(header=header, height=48, width=64, encoding="rgb8", is_bigendian=0,
                            step=64 * 3, data=rgb.reshape(-1))
                writer.write(raw, t_ns, ts.serialize_cdr(msg, img_t.__msgtype__))
                png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].reshape(-1)
                writer.write(junk, t_ns + 2, b"\x00\x01\x00\x00junk")  # rejected, skipped
            else:
                png = np.frombuffer(b"not a png", np.uint8)  # rejected, skipped
            cmsg = comp_t(header=header, format="png", data=png)
            writer.write(comp, t_ns + 1, ts.serialize_cdr(cmsg, comp_t.__msgtype__))
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    images = root / "images"
    images.mkdir()
    for i in (0, 1, 2, 10):  # frame_10 comes after frame_2 (numbers compared numerically)
        cv2.imwrite(str(images / f"frame_{i}.png"), cv2.cvtColor(_frame(i), cv2.COLOR_RGB2BGR))
    (images / "frame_2b.jpg").write_bytes(b"broken")  # between frame_2 and frame_10: skipped
    (images / "notes.txt").write_text("not an image")
    return {
        "video": _write_video(root / "clip.mp4"),
        "images": images,
        "bag": _write_bag(root / "bag"),
    }


# The sources -------------------------------------------------------------------------------------


def test_synthetic_clips() -> None:
    src = SyntheticClips(32, clip_frames=4)
    frames = list(src.frames())
    assert len(frames) == 4 * 12
    assert [f.label for f in frames[::4]] == list(CLASS_NAMES[:12])
    assert [f.new_clip for f in frames[:5]] == [True, False, False, False, True]
    assert all(f.rgb.shape == (32, 32, 3) and f.rgb.dtype == np.uint8 for f in frames)
    # The data set generator's frames: video 0 of each class with the same seed.
    from rsee_ros.data.synthetic import SyntheticConfig, render_video

    cfg = SyntheticConfig(seed=0, frames_per_video=4, size=32)
    rng = np.random.default_rng(np.random.SeedSequence([0, 3, 0]))
    np.testing.assert_array_equal(frames[12].rgb, render_video(CLASS_NAMES[3], rng, cfg)[0][0])
    # A second pass (a loop) shows the next video of each class.
    again = list(src.frames())
    assert not np.array_equal(again[0].rgb, frames[0].rgb)
    np.testing.assert_array_equal(SyntheticClips(32, 4).render("grow", 1), np.stack(
        [f.rgb for f in again[:4]]))
    one = SyntheticClips(32, clip_frames=4, action="shrink", num_classes=10)
    assert [f.label for f in one.frames()] == ["shrink"] * 4
    with pytest.raises(SourceError):
        SyntheticClips(action="jump")
    with pytest.raises(SourceError):
        SyntheticClips(action="rotate_cw", num_classes=12)  # class 13 of 14
    with pytest.raises(SourceError):
        SyntheticClips(16)


def test_synthetic_clips_default_to_the_default_models_set() -> None:
    src = SyntheticClips()
    assert (src.size, src.clip_frames, src.seed, len(src.actions)) == (128, 16, 0, 12)
    assert src.describe() == "synthetic action clips 128x128 (12 classes)"


def test_demo_clip_with_labels() -> None:
    labels = load_clip_labels(DEMO_LABELS)
    assert detect_source_type("demo") == "video"
    src = VideoFileSource(labels.video, labels)
    frames = list(src.frames())
    assert len(frames) == labels.clips[-1].end == 192 and src.fps == 8.0
    assert frames[0].rgb.shape == (128, 128, 3)
    starts = [i for i, f in enumerate(frames) if f.new_clip]
    assert starts == [c.start for c in labels.clips]
    assert [frames[c.start].label for c in labels.clips] == [c.label for c in labels.clips]
    assert {c.label for c in labels.clips} == set(labels.classes)
    # The clip shows the classes of the packaged default model, in its label order.
    from rsee_ros.model import load_checkpoint
    from rsee_ros.resources import DEFAULT_CHECKPOINT

    assert list(labels.classes) == load_checkpoint(DEFAULT_CHECKPOINT).class_names
    assert DEMO_LABELS.stat().st_size + labels.video.stat().st_size < 300_000


def test_default_model_recognises_the_held_out_demo_clips() -> None:
    """The packaged model through the node's pipeline (default settings), clip by clip: the
    clips are held out from training (another seed), so this checks the shipped weights."""
    from rsee_ros.pipeline.runner import RecognitionPipeline
    from rsee_ros.resources import DEFAULT_CHECKPOINT

    labels = load_clip_labels(DEMO_LABELS)
    frames = list(VideoFileSource(labels.video, labels).frames())
    pipeline = RecognitionPipeline(DEFAULT_CHECKPOINT, device="cpu")
    predicted, truth = [], []
    for number, clip in enumerate(labels.clips):
        for index in range(clip.start, clip.end):
            # a 2 s pause between clips (max_gap_s is 1 s): every clip is its own video
            stamp = index / labels.fps + 2.0 * number
            for result in pipeline.push("demo", stamp, frames[index].rgb):
                predicted.append(result.label)
                truth.append(clip.label)
        predicted += [r.label for r in pipeline.flush()]
        truth += [clip.label] * (len(predicted) - len(truth))
    assert len(predicted) == len(labels.clips)  # one window per clip
    correct = sum(p == t for p, t in zip(predicted, truth, strict=True))
    assert correct >= 9, list(zip(truth, predicted, strict=True))  # 12 clips; test split: 89%


def test_video_file_source(media: dict[str, Path], tmp_path: Path) -> None:
    src = VideoFileSource(media["video"])
    assert src.fps == 25.0
    frames = list(src.frames())
    assert len(frames) == 10 and [f.new_clip for f in frames[:2]] == [True, False]
    assert frames[0].rgb.shape == (48, 64, 3)
    assert abs(int(frames[3].rgb[40, 60, 0]) - 120) < 12  # red ramp survives the codec
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage" * 50)
    for path in (bad, tmp_path / "missing.mp4"):
        with pytest.raises(SourceError):
            VideoFileSource(path)


def test_video_file_source_decodes_with_opencv_without_pyav(
    media: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_pyav = list(VideoFileSource(media["video"]).frames())
    monkeypatch.setattr(video_mod, "av", None)  # as on a ROS install without `pip install av`
    src = VideoFileSource(media["video"])
    assert src.fps == 25.0
    frames = list(src.frames())
    assert len(frames) == 10 and frames[0].new_clip and not frames[1].new_clip
    assert np.abs(frames[3].rgb.astype(int) - with_pyav[3].rgb).mean() < 4


def test_image_folder_source(media: dict[str, Path]) -> None:
    rejects = RejectCounter(None)
    src = ImageFolderSource(media["images"], rejects)
    assert [p.name for p in src.files] == [
        "frame_0.png", "frame_1.png", "frame_2.png", "frame_2b.jpg", "frame_10.png"]
    frames = list(src.frames())
    assert len(frames) == 4 and rejects.counts == {"decode_failed": 1}
    np.testing.assert_array_equal(frames[1].rgb, _frame(1))
    np.testing.assert_array_equal(frames[3].rgb, _frame(10))
    assert frames[0].new_clip and not frames[1].new_clip and src.fps is None
    single = ImageFolderSource(media["images"] / "frame_1.png")
    assert len(list(single.frames())) == 1
    with pytest.raises(SourceError):
        ImageFolderSource(media["video"].parent / "nothing_here")


def test_rosbag_source(media: dict[str, Path]) -> None:
    rejects = RejectCounter(None)
    src = RosbagSource(media["bag"], rejects=rejects)  # first image topic by name
    assert src.topic == "/cam/compressed"
    assert src.image_topics == ["/cam/compressed", "/cam/junk", "/cam/raw"]
    frames = list(src.frames())
    assert len(frames) == 3 and rejects.counts == {"decode_failed": 1}
    assert [f.stamp_ns for f in frames] == [10_000_000_000, 10_500_000_000, 11_000_000_000]
    np.testing.assert_array_equal(frames[2].rgb, _frame(2))
    src.close()
    raw = RosbagSource(next(media["bag"].glob("*.mcap")), topic="/cam/raw")  # the file itself
    frames = list(raw.frames())
    assert len(frames) == 3 and frames[0].new_clip
    np.testing.assert_array_equal(frames[1].rgb, _frame(1))
    # The mean rate over the bag's duration (1.5 s here, set by the other topic's last message).
    assert raw.fps == pytest.approx(2 / 1.5, rel=1e-3)
    raw.close()
    with pytest.raises(SourceError, match="no image topic"):
        RosbagSource(media["bag"], topic="/nope")
    with pytest.raises(SourceError, match="cannot open rosbag"):
        RosbagSource(media["bag"] / "missing")


def test_rosbag_source_counts_messages_that_do_not_deserialise(media: dict[str, Path]) -> None:
    rejects = RejectCounter(None)
    src = RosbagSource(media["bag"], "/cam/junk", rejects)
    assert list(src.frames()) == [] and rejects.counts == {"deserialize_failed": 3}
    src.close()


def test_detect_source_type(media: dict[str, Path]) -> None:
    assert detect_source_type("synthetic") == detect_source_type("") == "synthetic"
    assert detect_source_type(str(media["video"])) == "video"
    assert detect_source_type(str(media["images"])) == "images"
    assert detect_source_type(str(media["images"] / "frame_0.png")) == "images"
    assert detect_source_type(str(media["bag"])) == "rosbag"
    assert detect_source_type(str(next(media["bag"].glob("*.mcap")))) == "rosbag"
    with pytest.raises(SourceError, match="does not exist"):
        detect_source_type("/no/such/file.mp4")


def test_every_source_has_the_frame_source_interface(media: dict[str, Path]) -> None:
    sources = [SyntheticClips(32, 4), VideoFileSource(media["video"]),
               ImageFolderSource(media["images"]), RosbagSource(media["bag"])]
    for src in sources:
        assert isinstance(src, FrameSource), type(src).__name__
        assert isinstance(src.describe(), str) and next(iter(src.frames())).rgb.ndim == 3
        src.close()
    assert not isinstance(object(), FrameSource)


def test_sources_load_without_rclpy_or_torch() -> None:
    code = textwrap.dedent(
        """
        import sys


        class BlockRclpy:
            def find_spec(self, name, path=None, target=None):
                if name == "rclpy" or name.startswith("rclpy."):
                    raise ImportError(f"{name} is blocked")
                return None


        sys.meta_path.insert(0, BlockRclpy())
        import rsee_ros.data.sources as sources

        frame = next(sources.SyntheticClips(32, 4).frames())
        assert frame.rgb.shape == (32, 32, 3)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("rclpy", "torch"))
        assert not loaded, loaded
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
