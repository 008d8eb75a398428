"""The torch engines: ``torch`` (the model itself, eager: the reference, what training uses) and
``torch-fused`` (per resolution, BatchNorm folded into the convolutions, channels-last memory
layout, traced and frozen with TorchScript; no dependency beyond torch)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from rsee_ros.engine.base import Engine, EngineState, past_maps
from rsee_ros.engine.graphs import LookGraph, ProcessGraph, resolution_model, shift_shapes
from rsee_ros.model.rsee import RSEEModel

__all__ = ["FusedTorchEngine", "TorchEngine"]


class TorchEngine(Engine):
    """The model's own modules, eager (``torch``)."""

    name = "torch"

    def __init__(self, model: RSEEModel, class_names: list[str],
                 metadata: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.config = model.config
        self.flops = model.flops
        self.class_names = list(class_names)
        self.metadata = dict(metadata or {})
        self._device = model.device
        self.device = str(self._device)
        self._shift_shapes = [shift_shapes(model, i) for i in range(self.config.num_resolutions)]
        self._shift_zeros = [[torch.zeros(shape, device=self._device) for shape in shapes]
                             for shapes in self._shift_shapes]
        self._look, self._process, self._finish = self._graphs()
        with torch.no_grad():
            summary, count = model.accumulator.initial_state(1, self._device)
            self._prior = model.accumulator.classify((summary, count))[0].cpu().numpy()

    def _graphs(self) -> tuple[nn.Module, list[nn.Module], nn.Module | None]:
        """The look, one process graph per resolution and the lowest one's continuation."""
        model, last = self.model, self.config.num_resolutions - 1
        finish = (ProcessGraph(model, last, from_look=True)
                  if self.config.selector_shares_backbone else None)
        processes = [ProcessGraph(model, i) for i in range(self.config.num_resolutions)]
        return LookGraph(model), processes, finish

    def prepare(self, frame: torch.Tensor) -> torch.Tensor:
        return frame.to(self._device, torch.float32).unsqueeze(0)

    def initial_state(self) -> EngineState:
        selector = self.model.selector.initial_state(1, self._device)
        summary, count = self.model.accumulator.initial_state(1, self._device)
        return EngineState(tuple(selector), summary, count, logits=self._prior)

    @torch.no_grad()
    def look(self, frame: torch.Tensor, state: EngineState) -> np.ndarray:
        out = self._look(frame, state.summary, state.count, *state.selector)
        n = len(state.selector)
        state.selector = tuple(out[1:1 + n])
        state.look_pass = out[1 + n] if len(out) > 1 + n else None
        return out[0][0].float().cpu().numpy()

    @torch.no_grad()
    def process(self, index: int, frame: torch.Tensor, state: EngineState, *, from_look: bool
                ) -> tuple[float, float]:
        graph = self._finish if from_look else self._process[index]
        past = [m.to(self._device) for m in past_maps(
            self._shift_shapes[index], state.shift, self._shift_zeros[index])]
        summary, count, logits, confidence, gate, *shift = graph(
            frame, state.summary, state.count, *past)
        state.summary, state.count = summary, count
        state.shift = tuple(shift) if shift else None
        state.logits = logits[0].float().cpu().numpy()
        return float(confidence[0]), float(gate[0])


class FusedTorchEngine(TorchEngine):
    """``torch-fused``: per resolution a copy of the model with its BatchNorm folded, in
    channels-last layout, each graph traced and frozen (``torch.jit.freeze``)."""

    name = "torch-fused"

    def _graphs(self) -> tuple[nn.Module, list[nn.Module], nn.Module | None]:
        cfg, device = self.config, self._device
        last = cfg.num_resolutions - 1
        copies = [resolution_model(self.model, i, fold=True).to(memory_format=torch.channels_last)
                  for i in range(cfg.num_resolutions)]
        frame = torch.zeros(1, 3, cfg.max_resolution, cfg.max_resolution, device=device)
        frame = frame.contiguous(memory_format=torch.channels_last)
        state = self.model.accumulator.initial_state(1, device)
        selector = tuple(self.model.selector.initial_state(1, device))
        past = self._shift_zeros
        look = _freeze(LookGraph(copies[last]), (frame, *state, *selector))
        processes = [_freeze(ProcessGraph(copies[i], i), (frame, *state, *past[i]))
                     for i in range(cfg.num_resolutions)]
        finish = None
        if cfg.selector_shares_backbone:
            with torch.no_grad():
                look_pass = LookGraph(copies[last])(frame, *state, *selector)[-1]
            finish = _freeze(ProcessGraph(copies[last], last, from_look=True),
                             (look_pass, *state, *past[last]))
        return look, processes, finish

    def prepare(self, frame: torch.Tensor) -> torch.Tensor:
        return super().prepare(frame).contiguous(memory_format=torch.channels_last)


def _freeze(graph: nn.Module, example: tuple[torch.Tensor, ...]) -> nn.Module:
    """``graph`` traced on ``example`` inputs and frozen for inference."""
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about Python-level shape checks; they are constant for one graph
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(graph.eval(), example, check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))
