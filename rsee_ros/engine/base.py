"""What an inference engine offers, and the one batch-1 streaming step every engine runs.

An :class:`Engine` runs the two parts of a step (:mod:`rsee_ros.engine.graphs`): the selector's
look and the processing of a frame at one resolution, on its own arrays (torch tensors, numpy
arrays for ONNX Runtime). :class:`EngineSession` holds one video's state and makes the
decisions, the same ones :meth:`RSEEModel.advance` makes (the mask of allowed actions, the
argmax, skips, the reuse rule, the FLOPs table, the exit rule, all from
:mod:`rsee_ros.model`), so an engine's streaming decisions equal the batched torch model's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rsee_ros.model import step
from rsee_ros.model.config import RSEEConfig
from rsee_ros.model.flops import FlopsTable
from rsee_ros.model.gate import should_exit
from rsee_ros.model.settings import InferenceSettings, allowed_actions, fixed_index
from rsee_ros.model.streaming import FrameStep
from rsee_ros.model.temporal import resample

__all__ = ["Engine", "EngineSession", "EngineState", "past_maps"]


@dataclass
class EngineState:
    """One video's recurrent state, in the engine's own arrays."""

    selector: tuple[Any, ...]
    summary: Any
    count: Any
    look_pass: Any = None
    """The last look's backbone pass (the lowest resolution continues it)."""
    logits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    """The prediction after the last processed frame (the prior before any)."""
    shift: tuple[Any, ...] | None = None
    """The temporal shift's maps of the last processed frame, per shifted block (``None``:
    none yet, the past is zeros)."""


def past_maps(shapes: Sequence[tuple[int, ...]], previous: Sequence[Any] | None,
              zeros: Sequence[Any]) -> list[Any]:
    """The temporal shift's past for a graph whose maps have ``shapes``: ``zeros`` (the
    engine's, of those shapes) before the first processed frame, else the ``previous`` frame's
    maps, as they are where the sizes match, otherwise resampled to these sizes by the model's
    own :func:`~rsee_ros.model.temporal.resample` (a torch tensor, so every engine resamples
    alike)."""
    if previous is None:
        return list(zeros)
    return [old if tuple(old.shape) == tuple(shape)
            else resample(torch.as_tensor(old).float(), shape[-2:])
            for old, shape in zip(previous, shapes, strict=True)]


class Engine(ABC):
    """A model ready to run batch-1 streaming steps (see the module docstring)."""

    name: str
    config: RSEEConfig
    flops: FlopsTable
    class_names: list[str]
    metadata: dict[str, Any]
    device: str

    @abstractmethod
    def prepare(self, frame: torch.Tensor) -> Any:
        """A ``(3, S, S)`` normalised frame as this engine's input."""

    @abstractmethod
    def initial_state(self) -> EngineState:
        """The state before a video's first frame."""

    @abstractmethod
    def look(self, frame: Any, state: EngineState) -> np.ndarray:
        """The selector's look at ``frame``: action logits ``(A,)``; updates the selector
        state and ``state.look_pass``."""

    @abstractmethod
    def process(self, index: int, frame: Any, state: EngineState, *, from_look: bool
                ) -> tuple[float, float]:
        """Process ``frame`` at resolution ``index`` (``from_look``: continue the look's pass);
        updates the accumulator state and ``state.logits``; returns the confidence and the
        learned gate's exit probability."""

    def session(self, settings: InferenceSettings | None = None) -> EngineSession:
        """A streaming session for one video."""
        return EngineSession(self, settings or InferenceSettings())

    def describe(self) -> str:
        """The engine and where it runs, for logs."""
        return f"{self.name} on {self.device}"


class EngineSession:
    """One video, frame by frame, on an engine; the same interface as
    :class:`~rsee_ros.model.streaming.StreamingSession` (``settings`` may change between
    frames and apply from the next one)."""

    def __init__(self, engine: Engine, settings: InferenceSettings) -> None:
        self.engine = engine
        self._settings = settings
        self._derived: tuple[InferenceSettings, np.ndarray, list[float], int | None] | None = None
        self.reset()

    @property
    def settings(self) -> InferenceSettings:
        """The settings in effect (assign new ones to change them from the next frame)."""
        return self._settings

    @settings.setter
    def settings(self, settings: InferenceSettings) -> None:
        self._settings = settings

    def reset(self) -> None:
        """Forget the video and start a new one."""
        self._state = self.engine.initial_state()
        self._step = self._processed = self._skip_left = 0
        self._gmacs = 0.0
        self._exited = False

    # State ------------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once the exit gate has stopped this video."""
        return self._exited

    @property
    def needs_frame(self) -> bool:
        """False when the next frame will not be looked at (after the exit, inside a skip):
        it may then be pushed as ``None``, unprepared."""
        return not self._exited and self._skip_left == 0

    @property
    def frames_seen(self) -> int:
        """Frames pushed so far."""
        return self._step

    @property
    def frames_processed(self) -> int:
        """Frames that went through the backbone."""
        return self._processed

    @property
    def gmacs(self) -> float:
        """GMACs spent on this video so far."""
        return self._gmacs

    @property
    def probabilities(self) -> torch.Tensor:
        """The accumulated prediction ``(num_classes,)`` (the prior before any frame)."""
        return torch.softmax(torch.from_numpy(self._state.logits.astype(np.float32)), -1)

    # Step -------------------------------------------------------------------------------------

    def _rules(self) -> tuple[np.ndarray, list[float], int | None]:
        """Mask, action costs and the uniform policy's index for the current settings."""
        settings = self._settings
        if self._derived is None or self._derived[0] is not settings:
            cfg = self.engine.config
            if settings.policy not in ("learned", "uniform"):
                raise ValueError(f"streaming engines run the learned and uniform policies, "
                                 f"not {settings.policy!r}")
            learned = settings.policy == "learned"
            mask = allowed_actions(cfg, settings).numpy()
            costs = step.action_costs(
                self.engine, looks_through_backbone=learned and cfg.selector_shares_backbone,
                dtype=torch.float64, device=torch.device("cpu")).tolist()
            fixed = None if learned else fixed_index(cfg, settings)
            self._derived = (settings, mask, costs, fixed)
        return self._derived[1], self._derived[2], self._derived[3]

    def push(self, frame: torch.Tensor | np.ndarray | None) -> FrameStep:
        """Feed the next frame, a ``(3, S, S)`` normalised tensor (``None`` is accepted when
        :attr:`needs_frame` is False)."""
        index = self._step
        self._step += 1
        if not self.needs_frame:
            if self._skip_left:
                self._skip_left -= 1
            return FrameStep(index, False, 0, True, False, self.probabilities, 0.0)
        if frame is None:
            raise ValueError("this frame is looked at: it must be given")
        engine, cfg, state = self.engine, self.engine.config, self._state
        mask, costs, fixed = self._rules()
        x = engine.prepare(torch.as_tensor(frame))
        gmacs = 0.0
        if fixed is None:
            logits = engine.look(x, state)
            gmacs += engine.flops.selector
            action = int(np.argmax(np.where(mask, logits, -np.inf)))
        else:
            action = fixed
        num_res = cfg.num_resolutions
        if action >= num_res:  # a skip of n frames: this one and the next n - 1
            self._skip_left = cfg.skip_steps[action - num_res] - 1
            self._gmacs += gmacs
            return FrameStep(index, True, 0, True, False, self.probabilities, gmacs)
        from_look = fixed is None and step.reuses_look(cfg, action, state.look_pass is not None)
        confidence, gate = engine.process(action, state.look_pass if from_look else x, state,
                                          from_look=from_look)
        gmacs += costs[action]
        score = gate if (self._settings.gate or cfg.gate) == "learned" else confidence
        self._exited = bool(should_exit(score, self._settings.exit_threshold))
        self._processed += 1
        self._gmacs += gmacs
        return FrameStep(index, True, cfg.resolutions[action], False, self._exited,
                         self.probabilities, gmacs)
