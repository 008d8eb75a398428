"""Inference engines: export round trips per backbone, the same decisions on every engine
(streaming) as the torch model (batched), refused exports, the auto fallback."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rsee_ros.engine import cached_export, engine_for_model, load_engine
from rsee_ros.engine.base import Engine
from rsee_ros.engine.export import ExportError, compare_engines, export_checkpoint
from rsee_ros.engine.onnxruntime_engine import OnnxRuntimeEngine
from rsee_ros.model import InferenceSettings, RSEEConfig, build_rsee, load_checkpoint
from rsee_ros.model.checkpoint import save_checkpoint
from rsee_ros.model.preprocess import frames_to_tensor
from rsee_ros.resources import DEFAULT_CHECKPOINT

pytest.importorskip("onnxruntime")

TINY = dict(num_classes=3, resolutions=(64, 32), selector_hidden=16, accumulator_hidden=16)
CONFIGS = {
    "mobilenet_shared_look": RSEEConfig(**TINY, selector_shares_backbone=True,
                                        selector_blocks=4, selector_sees_state=True),
    "mobilenet_separate_selector_gru": RSEEConfig(**TINY, selector_rnn="gru",
                                                  accumulator="mean"),
    "mobilenet_temporal_shift_after_look": RSEEConfig(
        **TINY, selector_shares_backbone=True, selector_blocks=4, selector_sees_state=True,
        temporal_shift=0.25),
    "mobilenet_spatial_accumulator_temporal_shift": RSEEConfig(
        **TINY, accumulator="conv_gru", accumulator_grid=2, temporal_shift=0.125,
        gate="learned"),
    "resnet18_per_resolution_learned_gate": RSEEConfig(
        **TINY, backbone="resnet18", backbone_mode="per_resolution",
        per_resolution_backbones=("resnet18", "resnet18"), gate="learned", accumulator="max"),
}


def _videos(size: int, count: int = 6, frames: int = 8, seed: int = 0) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    clips = rng.integers(0, 256, (count, frames, 48, 64, 3), dtype=np.uint8)
    return [frames_to_tensor(clip, size) for clip in clips]


def _streamed(engine: Engine, video: torch.Tensor, settings: InferenceSettings):
    session = engine.session(settings)
    resolutions = []
    for frame in video:
        resolutions.append(session.push(frame).resolution)
        if session.done:
            break
    resolutions += [0] * (len(video) - len(resolutions))
    return resolutions, session.probabilities, session.gmacs


def _same_as_batched(engine: Engine, model, videos, settings: InferenceSettings) -> None:
    batched = model.infer_batch(torch.stack(videos), settings)
    for i, video in enumerate(videos):
        resolutions, probabilities, gmacs = _streamed(engine, video, settings)
        assert resolutions == batched.resolutions[i].tolist(), (engine.name, i)
        assert gmacs == pytest.approx(float(batched.gmacs[i]), rel=1e-9)
        assert torch.allclose(probabilities, batched.probabilities[i], atol=1e-4)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def exported(request, tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    torch.manual_seed(1)
    config = CONFIGS[request.param]
    model = build_rsee(config).eval()
    # per-resolution BatchNorm statistics that differ, so that folding the wrong branch shows
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.uniform_(-0.5, 0.5)
    folder = tmp_path_factory.mktemp(request.param)
    path = save_checkpoint(folder / "model.pt", model, ["wave", "clap", "jump"])
    checkpoint = load_checkpoint(path)
    manifest = export_checkpoint(checkpoint, folder / "onnx", source=path,
                                 sample_videos=_videos(config.max_resolution, seed=3))
    return checkpoint, folder / "onnx", manifest


def test_export_round_trip_per_backbone(exported) -> None:
    checkpoint, directory, manifest = exported
    check = manifest["validation"]
    assert check["same_decisions"] == check["videos"] > 0 and check["max_difference"] < 1e-4
    assert json.loads((directory / "manifest.json").read_text())["class_names"] == [
        "wave", "clap", "jump"]
    engine = OnnxRuntimeEngine(directory)
    report = compare_engines(engine_for_model(checkpoint.model, checkpoint.class_names), engine,
                             _videos(checkpoint.config.max_resolution, seed=11))
    assert report["same_decisions"] == report["videos"] and report["max_difference"] < 1e-4


@pytest.mark.parametrize("threshold", [0.4, 1.0])
def test_every_engine_streams_what_the_batched_model_decides(exported, threshold) -> None:
    checkpoint, directory, _ = exported
    model, names = checkpoint.model, checkpoint.class_names
    videos = _videos(checkpoint.config.max_resolution, seed=5)
    engines = [engine_for_model(model, names, "torch"), engine_for_model(model, names,
                                                                          "torch-fused"),
               OnnxRuntimeEngine(directory)]
    for policy in ("learned", "uniform"):
        settings = InferenceSettings(exit_threshold=threshold, policy=policy)
        for engine in engines:
            _same_as_batched(engine, model, videos, settings)


def test_the_default_model_on_synthetic_clips() -> None:
    """The packaged model on one rendered clip of each synthetic class: every engine streams
    the batched decisions, at the default and a low threshold."""
    from rsee_ros.data.sources import SyntheticClips

    torch.set_num_threads(1)
    checkpoint = load_checkpoint(DEFAULT_CHECKPOINT)
    clips = SyntheticClips()
    videos = [frames_to_tensor(clips.render(a, 3), 112) for a in clips.actions]
    engines = [engine_for_model(checkpoint.model, checkpoint.class_names, "torch-fused"),
               load_engine(DEFAULT_CHECKPOINT, "onnxruntime")]  # the session's engine cache
    for threshold in (0.6, 0.9):
        settings = InferenceSettings(exit_threshold=threshold)
        _same_as_batched(engine_for_model(checkpoint.model, checkpoint.class_names),
                         checkpoint.model, videos, settings)
        for engine in engines:
            _same_as_batched(engine, checkpoint.model, videos, settings)
    # the checkpoint's export is cached: a second load does not export again
    assert cached_export(DEFAULT_CHECKPOINT) == engines[1].directory


def test_tampered_or_mismatched_exports_are_refused(exported, tmp_path: Path) -> None:
    _, directory, _ = exported
    cases = {}
    for case in ("checksum", "classes", "missing", "manifest"):
        copy = tmp_path / case
        shutil.copytree(directory, copy)
        cases[case] = copy
    graph = next(cases["checksum"].glob("process_*.onnx"))
    graph.write_bytes(graph.read_bytes()[:-1] + b"\x00")
    manifest = json.loads((cases["classes"] / "manifest.json").read_text())
    manifest["class_names"] = manifest["class_names"][:2]
    (cases["classes"] / "manifest.json").write_text(json.dumps(manifest))
    next(cases["missing"].glob("process_*.onnx")).unlink()
    (cases["manifest"] / "manifest.json").write_text("{not json")
    for case, words in (("checksum", "checksum does not match"), ("classes", "class names"),
                        ("missing", "is missing"), ("manifest", "unreadable manifest")):
        with pytest.raises(ExportError, match=words) as info:
            OnnxRuntimeEngine(cases[case])
        assert "\n" not in str(info.value) and str(cases[case]) in str(info.value)


def test_an_export_refuses_a_folder_in_use(exported) -> None:
    checkpoint, directory, _ = exported
    with pytest.raises(ExportError, match="not an empty folder"):
        export_checkpoint(checkpoint, directory)


def test_auto_falls_back_to_torch_without_onnxruntime(exported, monkeypatch, caplog) -> None:
    checkpoint, _, _ = exported
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    with caplog.at_level(logging.INFO, logger="rsee_ros.engine"):
        engine = load_engine(checkpoint.path, "auto")
    assert engine.name == "torch"
    assert "engine auto: torch" in caplog.text
    with pytest.raises(ValueError, match="install onnxruntime"):
        load_engine(exported[1], "auto")


_CUDA = torch.cuda.is_available()


def _ort_has(provider: str) -> bool:
    import onnxruntime

    return provider in onnxruntime.get_available_providers()


@pytest.mark.skipif(_CUDA, reason="this machine has CUDA")
def test_cuda_asked_for_without_a_gpu_is_one_clear_error(exported) -> None:
    checkpoint, directory, _ = exported
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        load_engine(directory.parent / "model.pt", "torch", device="cuda")
    if not _ort_has("CUDAExecutionProvider"):
        with pytest.raises(ExportError, match="no CUDAExecutionProvider"):
            load_engine(directory, "onnxruntime", device="cuda")
    if not _ort_has("TensorrtExecutionProvider"):
        with pytest.raises(ExportError, match="no TensorrtExecutionProvider"):
            load_engine(directory, "tensorrt", device="cuda")


@pytest.mark.skipif(not _CUDA, reason="needs CUDA")
@pytest.mark.parametrize("engine", ["torch", "torch-fused"])
def test_torch_engines_on_cuda_stream_the_cpu_decisions(exported, engine: str) -> None:
    checkpoint, directory, _ = exported
    source = directory.parent / "model.pt"
    videos = _videos(checkpoint.config.max_resolution, seed=7)
    cuda = load_engine(source, engine, device="cuda")
    assert str(cuda.device).startswith("cuda")
    for threshold in (0.4, 1.0):
        _same_as_batched(cuda, checkpoint.model, videos,
                         InferenceSettings(exit_threshold=threshold))


@pytest.mark.skipif(not _ort_has("CUDAExecutionProvider"), reason="needs onnxruntime-gpu")
def test_onnxruntime_cuda_provider_streams_the_cpu_decisions(exported) -> None:
    checkpoint, directory, _ = exported
    engine = load_engine(directory, "onnxruntime", device="cuda")
    videos = _videos(checkpoint.config.max_resolution, seed=7)
    for threshold in (0.4, 1.0):
        _same_as_batched(engine, checkpoint.model, videos,
                         InferenceSettings(exit_threshold=threshold))
