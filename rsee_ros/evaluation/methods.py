"""The one registry of evaluated methods, used by ``rsee eval`` and ``rsee bench``.

Every method is a :class:`Method`: a model (the evaluated checkpoint, or a separately trained
baseline checkpoint) and the :class:`~rsee_ros.model.InferenceSettings` it runs with. The
in-model methods are policy overrides of the same weights, in this order:

* ``rsee``: the learned selector with the exit gate (threshold sweep);
* ``uniform``: all T frames at the highest resolution, never exiting; ``uniform_<r>``: the same
  at each lower resolution r;
* ``uniform_first_frame``: only the first sampled frame, at the highest resolution (uniform
  policy with exit threshold 0: the gate stops after the first processed frame);
* ``random``: uniformly random resolution/skip actions with the exit gate (threshold sweep);
* ``resolution_only`` (AR-Net-like): the learned selector, never exiting;
* ``exit_only`` (FrameExit-like): every frame at the highest resolution with the exit gate
  (threshold sweep).

``rsee bench`` runs :data:`BENCH_METHODS` of them at one threshold. A separately trained baseline
checkpoint runs in one of :data:`~rsee_ros.evaluation.common.BASELINE_MODES`
(:func:`checkpoint_methods`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rsee_ros.evaluation.common import BASELINE_MODES, DEFAULT_THRESHOLDS, NEVER, threshold_json
from rsee_ros.model import InferenceSettings, RSEEConfig

__all__ = [
    "BENCH_METHODS",
    "BUILTIN_BASELINES",
    "LABELS",
    "MAIN",
    "Method",
    "bench_methods",
    "builtin_groups",
    "builtin_methods",
    "checkpoint_methods",
    "default_baseline_mode",
    "label_for",
    "settings_json",
]

MAIN = "main"
"""The key of the evaluated checkpoint's model in a models mapping."""
BUILTIN_BASELINES = (
    "uniform", "uniform_first_frame", "random", "resolution_only", "exit_only",
)  # plus uniform_<r> for each lower resolution
BENCH_METHODS = ("rsee", "uniform", "resolution_only", "exit_only")
"""The methods of ``rsee bench``, in its round-robin order."""
LABELS = {
    "rsee": "RSEE (resolution + exit)",
    "uniform": "Uniform (all frames, full res.)",
    "uniform_first_frame": "Uniform first frame",
    "random": "Random policy + exit",
    "resolution_only": "Resolution-only (AR-Net-like)",
    "exit_only": "Exit-only (FrameExit-like)",
}
"""Legend labels of the in-model methods (``uniform_<r>``: see :func:`label_for`)."""


@dataclass(frozen=True)
class Method:
    """One evaluated configuration: ``group`` names the JSON entry (``rsee`` or a baseline),
    ``model`` the key of the model in the models mapping; ``sweep`` groups report a list."""

    group: str
    model: str
    settings: InferenceSettings
    sweep: bool = False


def builtin_groups(config: RSEEConfig) -> list[str]:
    """The names of the in-model methods of a model configuration, in registry order."""
    lower = [f"uniform_{r}" for r in config.resolutions[1:]]
    return ["rsee", "uniform", *lower, "uniform_first_frame", "random", "resolution_only",
            "exit_only"]


def label_for(name: str, checkpoints: Mapping[str, Any] | None = None) -> str:
    """The legend label of a result group (``checkpoints``: a report's baseline_checkpoints)."""
    if checkpoints and name in checkpoints:
        return f"{name} (separate checkpoint, {checkpoints[name].get('mode')})"
    if name in LABELS:
        return LABELS[name]
    if name.startswith("uniform_") and name.split("_", 1)[1].isdigit():
        return f"Uniform {name.split('_', 1)[1]} px"
    return name


def builtin_methods(
    config: RSEEConfig,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    *,
    seed: int = 0,
    exclude: Collection[str] = (),
    only: Collection[str] | None = None,
    model: str = MAIN,
    gate: str | None = None,
) -> list[Method]:
    """RSEE and the in-model baselines (module docstring) for one checkpoint, sweeps over
    ``thresholds``; ``only`` keeps just those groups, ``exclude`` drops some; ``gate``
    (``confidence`` or ``learned``) overrides the checkpoint's exit rule for every method."""
    top = config.max_resolution
    learned = InferenceSettings(policy="learned", gate=gate)
    uniform = InferenceSettings(policy="uniform", fixed_resolution=top, exit_threshold=NEVER,
                                gate=gate)
    random = InferenceSettings(policy="random", seed=seed, gate=gate)
    methods = [Method("rsee", model, learned.with_changes(exit_threshold=t), True)
               for t in thresholds]
    methods.append(Method("uniform", model, uniform))
    for r in config.resolutions[1:]:
        methods.append(Method(f"uniform_{r}", model, uniform.with_changes(fixed_resolution=r)))
    methods.append(Method("uniform_first_frame", model, uniform.with_changes(exit_threshold=0.0)))
    methods += [Method("random", model, random.with_changes(exit_threshold=t), True)
                for t in thresholds]
    methods.append(Method("resolution_only", model, learned.with_changes(exit_threshold=NEVER)))
    methods += [Method("exit_only", model, uniform.with_changes(exit_threshold=t), True)
                for t in thresholds]
    return [m for m in methods
            if m.group not in exclude and (only is None or m.group in only)]


def bench_methods(config: RSEEConfig, threshold: float) -> list[Method]:
    """The :data:`BENCH_METHODS` at one exit threshold: RSEE (selector + gate), Uniform (every
    frame at the highest resolution, no exit), Resolution-only (selector, no exit) and
    Exit-only (highest resolution + gate)."""
    return builtin_methods(config, (threshold,), only=BENCH_METHODS)


def default_baseline_mode(metadata: Mapping[str, Any]) -> str:
    """How to run a separately trained baseline checkpoint when no mode is given: a warm-up
    checkpoint (no trained selector) as ``uniform``, anything else with its ``learned`` policy."""
    return "uniform" if metadata.get("stage") == "warmup" else "learned"


def checkpoint_methods(
    name: str, config: RSEEConfig, mode: str, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> list[Method]:
    """Methods for a separately trained baseline checkpoint registered as model ``name``:
    ``uniform`` (all frames at its highest resolution, no exit; one entry), ``learned`` (its
    selector and gate, threshold sweep) or ``exit`` (highest resolution + gate, sweep)."""
    top = config.max_resolution
    uniform = InferenceSettings(policy="uniform", fixed_resolution=top, exit_threshold=NEVER)
    if mode == "uniform":
        return [Method(name, name, uniform)]
    if mode == "learned":
        return [Method(name, name, InferenceSettings(exit_threshold=t), True) for t in thresholds]
    if mode == "exit":
        return [Method(name, name, uniform.with_changes(exit_threshold=t), True)
                for t in thresholds]
    raise ValueError(f"baseline mode must be one of {BASELINE_MODES}, got {mode!r}")


def settings_json(settings: InferenceSettings) -> dict[str, Any]:
    """The inference settings of a method as plain data (the fields of its JSON entry)."""
    return {
        "policy": settings.policy,
        "threshold": threshold_json(settings.exit_threshold),
        "fixed_resolution": settings.fixed_resolution if settings.policy == "uniform" else None,
        "allowed_resolutions": (list(settings.allowed_resolutions)
                                if settings.allowed_resolutions is not None else None),
        "skip_enabled": settings.skip_enabled,
        "gate": settings.gate,
        "seed": settings.seed if settings.policy == "random" else None,
    }
