"""Checkpoint round trip and every way a checkpoint file can be wrong."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from rsee_ros.model import (
    NEVER_EXIT,
    CheckpointError,
    RSEEConfig,
    build_rsee,
    load_checkpoint,
    save_checkpoint,
)

CONFIG = RSEEConfig(num_classes=3, resolutions=(64, 48), selector_hidden=16,
                    accumulator_hidden=16)
CLASSES = ["wave", "clap", "jump"]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(1)
    return build_rsee(CONFIG).eval()


@pytest.fixture()
def saved(tmp_path: Path, model: torch.nn.Module) -> Path:
    return save_checkpoint(tmp_path / "model.pt", model, CLASSES, {"note": "test"})


@pytest.mark.parametrize("half", [False, True])
def test_round_trip_keeps_weights_labels_and_flops(tmp_path: Path, model, half: bool) -> None:
    path = save_checkpoint(tmp_path / "m.pt", model, CLASSES, {"epochs": 3}, half=half)
    loaded = load_checkpoint(path)
    assert loaded.class_names == CLASSES
    assert loaded.config == CONFIG
    assert loaded.metadata == {"epochs": 3}
    assert loaded.model.flops == model.flops
    frames = torch.randn(2, 4, 3, 64, 64)
    expected = model.infer_batch(frames, exit_threshold=NEVER_EXIT)
    actual = loaded.model.infer_batch(frames, exit_threshold=NEVER_EXIT)
    tolerance = 1e-2 if half else 1e-6
    assert torch.allclose(expected.probabilities, actual.probabilities, atol=tolerance)
    for key, value in model.state_dict().items():
        assert torch.allclose(value.float(), loaded.model.state_dict()[key].float(),
                              atol=tolerance), key


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="file not found") as info:
        load_checkpoint(tmp_path / "nope.pt")
    assert "nope.pt" in str(info.value)


def test_truncated_file(tmp_path: Path, saved: Path) -> None:
    cut = tmp_path / "cut.pt"
    cut.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(cut)
    assert "cut.pt" in str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(empty)


def test_foreign_file(tmp_path: Path, model) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save(model.backbone.state_dict(), foreign)
    with pytest.raises(CheckpointError, match="not an rsee_ros checkpoint"):
        load_checkpoint(foreign)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(text)


def test_mismatched_weights(tmp_path: Path, saved: Path) -> None:
    payload = torch.load(saved, weights_only=True)
    payload["config"]["num_classes"] = 4
    payload["class_names"] = CLASSES + ["run"]
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(bad)
    payload = torch.load(saved, weights_only=True)
    payload["config"]["accumulator"] = "mean"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="do not match the model configuration"):
        load_checkpoint(bad)
    payload = torch.load(saved, weights_only=True)
    payload["class_names"] = ["only-one"]
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="class names"):
        load_checkpoint(bad)


class _Exploit:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path: Path, saved: Path) -> None:
    marker = tmp_path / "pwned"
    payload = torch.load(saved, weights_only=True)
    payload["metadata"] = {"evil": _Exploit(marker)}
    evil = tmp_path / "evil.pt"
    torch.save(payload, evil, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(CheckpointError, match="refused") as info:
        load_checkpoint(evil)
    assert "evil.pt" in str(info.value)
    assert not marker.exists(), "loading executed pickled code"


def test_refusals_name_the_blocked_global_and_give_no_advice(tmp_path: Path, saved: Path,
                                                            recwarn) -> None:
    marker = tmp_path / "pwned"
    payload = torch.load(saved, weights_only=True)
    payload["metadata"] = {"evil": _Exploit(marker)}
    evil = tmp_path / "evil.pt"
    torch.save(payload, evil, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(evil)
    text = str(info.value)
    assert "\n" not in text and "weights_only" not in text  # one line, not torch's advice
    assert "posix.system" in text or "os.system" in text  # which global was blocked
    assert not [w for w in recwarn if "pickle" in str(w.message)]  # torch's warnings silenced


def test_non_finite_weights_are_refused(tmp_path: Path, saved: Path) -> None:
    payload = torch.load(saved, weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][key] = payload["state_dict"][key].clone()
    payload["state_dict"][key].view(-1)[0] = float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match=f"weight {key} holds NaN"):
        load_checkpoint(bad)
