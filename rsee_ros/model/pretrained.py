"""ImageNet initialisation from torchvision-format state dicts (loaded without pickled code)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

_RESNET_TRUNK_PREFIXES = {
    "conv1.": "trunk.0.", "bn1.": "trunk.1.", "layer1.": "trunk.4.", "layer2.": "trunk.5.",
    "layer3.": "trunk.6.", "layer4.": "trunk.7.",
}


class PretrainedWeightsError(RuntimeError):
    """The pretrained weights file is missing, corrupt or of the wrong architecture."""


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_mobilenet_v2_weights() -> Path:
    """Path of the ImageNet MobileNetV2 file that ``make`` set up, checked against its hash."""
    from rsee_ros.model.weights_manifest import (
        MOBILENET_V2_IMAGENET_FILENAME,
        MOBILENET_V2_IMAGENET_SHA256,
        default_weights_dir,
    )

    path = default_weights_dir() / MOBILENET_V2_IMAGENET_FILENAME
    if not path.is_file():
        raise PretrainedWeightsError(
            f"{path}: ImageNet MobileNetV2 weights not found; run `make setup` or set "
            "RSEE_WEIGHTS_DIR (or build the model with pretrained=False)"
        )
    actual = sha256_of(path)
    if actual != MOBILENET_V2_IMAGENET_SHA256:
        raise PretrainedWeightsError(f"{path}: sha256 {actual} does not match the manifest")
    return path


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a plain tensor state dict; pickled objects are refused (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"{path}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise PretrainedWeightsError(f"{path}: not a loadable state dict ({error})") from error
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"{path}: expected a state dict, found {type(state)}")
    return state


def torchvision_to_trunk(name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision classification state dict to our pooled-trunk layout."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if name == "mobilenet_v2":
            if key.startswith("features."):
                out["trunk." + key[len("features."):]] = value
        else:
            for prefix, target in _RESNET_TRUNK_PREFIXES.items():
                if key.startswith(prefix):
                    out[target + key[len(prefix):]] = value
    if not out:
        raise PretrainedWeightsError(f"weights do not look like a torchvision {name}")
    return out
