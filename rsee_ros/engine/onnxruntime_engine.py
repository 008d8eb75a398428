"""The ``onnxruntime`` engine: an export directory (:mod:`rsee_ros.engine.export`) run by ONNX
Runtime, with its CPU provider, or on NVIDIA hardware its CUDA or TensorRT provider.

Loading checks the manifest and every graph's SHA-256 (a changed, missing or foreign graph is
refused with one line naming the file) and that the graphs' outputs fit the manifest's classes.
TensorRT builds an engine per graph on first use, which takes minutes on a Jetson; with
``trt_cache`` the built engines are kept in that folder and later starts load them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsee_ros.engine.base import Engine, EngineState, past_maps
from rsee_ros.engine.export import ExportError, as_numpy, check_graph, load_manifest
from rsee_ros.model.config import RSEEConfig
from rsee_ros.model.flops import FlopsTable

__all__ = ["PROVIDERS", "OnnxRuntimeEngine", "onnxruntime_available"]

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
"""Provider names accepted by :class:`OnnxRuntimeEngine` -> ONNX Runtime's names."""


def onnxruntime_available() -> bool:
    """True when the ``onnxruntime`` package can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxRuntimeEngine(Engine):
    """An export run by ONNX Runtime (see the module docstring)."""

    name = "onnxruntime"

    def __init__(self, directory: str | Path, *, provider: str = "cpu", threads: int = 1,
                 trt_cache: str | Path | None = None) -> None:
        import onnxruntime as ort

        self.directory = Path(directory)
        manifest = load_manifest(self.directory)
        self.manifest = manifest
        try:
            self.config = RSEEConfig.from_dict(manifest["config"])
            self.flops = FlopsTable.from_dict(manifest["flops"])
            self.class_names = [str(c) for c in manifest["class_names"]]
            graphs = dict(manifest["graphs"])
            initial = manifest["initial_state"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"{self.directory / 'manifest.json'}: inconsistent ({exc})") from exc
        if len(self.class_names) != self.config.num_classes:
            raise ExportError(f"{self.directory / 'manifest.json'}: {len(self.class_names)} "
                              f"class names for {self.config.num_classes} classes")
        self.metadata = dict(manifest.get("metadata") or {})
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        providers = self._providers(ort, provider, trt_cache)
        self.device = provider
        self._sessions: dict[str, Any] = {}
        self._inputs: dict[str, list[str]] = {}
        for name in self._needed_graphs():
            if name not in graphs:
                raise ExportError(f"{self.directory}: the manifest lists no graph {name}")
            path = check_graph(self.directory, name, graphs[name])
            self._sessions[name] = ort.InferenceSession(str(path), options, providers=providers)
            self._inputs[name] = [i.name for i in self._sessions[name].get_inputs()]
        # The temporal shift's inputs (after frame, summary and count) have static shapes.
        self._shift_shapes = {
            name: [tuple(i.shape) for i in session.get_inputs()[3:]]
            for name, session in self._sessions.items() if name != "look"}
        self._shift_zeros = {name: [np.zeros(shape, np.float32) for shape in shapes]
                             for name, shapes in self._shift_shapes.items()}
        self._check_outputs()
        self._summary0 = np.asarray([initial["summary"]], np.float32)
        self._prior = np.asarray(initial["prior_logits"], np.float32)
        self._resolution_graphs = [f"process_{r}" for r in self.config.resolutions]
        self._finish = f"finish_{self.config.resolutions[-1]}"

    def _needed_graphs(self) -> list[str]:
        cfg = self.config
        names = ["look", *(f"process_{r}" for r in cfg.resolutions)]
        if cfg.selector_shares_backbone:
            names.append(f"finish_{cfg.resolutions[-1]}")
        return names

    @staticmethod
    def _providers(ort: Any, provider: str, trt_cache: str | Path | None) -> list[Any]:
        if provider not in PROVIDERS:
            raise ExportError(f"provider must be one of {sorted(PROVIDERS)}, got {provider!r}")
        available = ort.get_available_providers()
        wanted = PROVIDERS[provider]
        if wanted not in available:
            raise ExportError(f"ONNX Runtime here has no {wanted} (it has {available}); install "
                              "onnxruntime-gpu (x86) or NVIDIA's onnxruntime build (Jetson)")
        chain: list[Any] = []
        if provider == "tensorrt":
            options: dict[str, Any] = {}
            if trt_cache:
                Path(trt_cache).mkdir(parents=True, exist_ok=True)
                options = {"trt_engine_cache_enable": True,
                           "trt_engine_cache_path": str(trt_cache)}
            chain.append((wanted, options))
            chain.append(PROVIDERS["cuda"])
        elif provider == "cuda":
            chain.append(wanted)
        chain.append(PROVIDERS["cpu"])
        return chain

    def _check_outputs(self) -> None:
        for name, session in self._sessions.items():
            if name == "look":
                dim, expected = session.get_outputs()[0].shape[-1], self.config.num_actions
            else:
                dim, expected = session.get_outputs()[2].shape[-1], self.config.num_classes
            if isinstance(dim, int) and dim != expected:
                raise ExportError(f"{self.directory}: graph {name} gives {dim} outputs where the "
                                  f"manifest's model has {expected} (graph of another model?)")

    # Engine -----------------------------------------------------------------------------------

    def prepare(self, frame: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(as_numpy(frame)[None])

    def initial_state(self) -> EngineState:
        hidden = self.config.selector_hidden
        selector = tuple(np.zeros((1, hidden), np.float32)
                         for _ in range(2 if self.config.selector_rnn == "lstm" else 1))
        return EngineState(selector, self._summary0.copy(), np.zeros((1, 1), np.float32),
                           logits=self._prior)

    def look(self, frame: np.ndarray, state: EngineState) -> np.ndarray:
        names = self._inputs["look"]
        values = (frame, state.summary, state.count, *state.selector)
        out = self._sessions["look"].run(None, dict(zip(names, values, strict=True)))
        n = len(state.selector)
        state.selector = tuple(out[1:1 + n])
        state.look_pass = out[1 + n] if len(out) > 1 + n else None
        return out[0][0]

    def process(self, index: int, frame: np.ndarray, state: EngineState, *, from_look: bool
                ) -> tuple[float, float]:
        name = self._finish if from_look else self._resolution_graphs[index]
        names = self._inputs[name]
        past = [as_numpy(m) for m in past_maps(self._shift_shapes[name], state.shift,
                                               self._shift_zeros[name])]
        out = self._sessions[name].run(
            None, dict(zip(names, (frame, state.summary, state.count, *past), strict=True)))
        state.summary, state.count = out[0], out[1]
        state.logits = out[2][0]
        state.shift = tuple(out[5:]) if len(out) > 5 else None
        return float(out[3][0]), float(out[4][0])

    def describe(self) -> str:
        return f"onnxruntime ({PROVIDERS[self.device]}) from {self.directory}"
