"""Video-level metrics: top-1 accuracy, mAP, calibration error, per-class figures, the confusion
matrix, resolution/skip and exit-step histograms.

Pure numpy (sklearn is not a dependency). Accuracies and calibration errors are in percent
("points").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SKIP = "skip"
NO_EXIT = "none"
ECE_BINS = 15


def _numpy(x: object) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(x)


def top1_accuracy(scores: object, labels: object) -> float:
    """Percent of videos whose highest score is their label; ``scores`` is ``(N, C)``."""
    scores, labels = _numpy(scores), _numpy(labels)
    if len(labels) == 0:
        return float("nan")
    return float(100.0 * np.mean(scores.argmax(axis=1) == labels))


def average_precision(scores: object, positives: object) -> float:
    """Average precision of one class: ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score
    thresholds, highest first (tied scores form one threshold).

    Implemented with numpy because scikit-learn is not installed; it follows the definition of
    ``sklearn.metrics.average_precision_score`` (no interpolation). NaN without positives.
    """
    scores = _numpy(scores).astype(np.float64).ravel()
    positives = _numpy(positives).astype(bool).ravel()
    total = int(positives.sum())
    if total == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    scores, positives = scores[order], positives[order]
    # last index of each group of tied scores: a threshold admits the whole group at once
    ends = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    true_pos = np.cumsum(positives)[ends]
    predicted = ends + 1
    precision = true_pos / predicted
    recall = true_pos / total
    recall_steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_steps * precision))


def mean_average_precision(scores: object, labels: object, num_classes: int | None = None) -> float:
    """Mean over classes of the average precision of the video-level scores, in percent.

    Classes without a positive video in ``labels`` are left out of the mean (their AP is
    undefined); NaN when no class has one.
    """
    scores, labels = _numpy(scores), _numpy(labels)
    num_classes = scores.shape[1] if num_classes is None else num_classes
    values = [average_precision(scores[:, c], labels == c) for c in range(num_classes)]
    values = [v for v in values if not np.isnan(v)]
    return float(100.0 * np.mean(values)) if values else float("nan")


def resolution_histogram(
    resolutions: object, looked_at: object, model_resolutions: Sequence[int]
) -> dict[str, int]:
    """Frames processed at each resolution, and looked-at frames skipped (``"skip"``).

    ``resolutions`` is ``(N, T)`` (0: not processed), ``looked_at`` ``(N, T)`` bool. A looked-at
    frame with resolution 0 is one the selector skipped; frames inside a skip or after the exit
    are not looked at and are not counted here.
    """
    res, looked = _numpy(resolutions), _numpy(looked_at).astype(bool)
    hist = {str(int(r)): int(np.sum(res == r)) for r in model_resolutions}
    hist[SKIP] = int(np.sum(looked & (res == 0)))
    return hist


def action_histogram(
    actions: object, model_resolutions: Sequence[int], skip_steps: Sequence[int]
) -> dict[str, int]:
    """Looked-at frames by the action the policy took: each resolution (``"112"``) and each
    skip length (``"skip 2"``: skip this frame and the next). ``actions`` is ``(N, T)``: the
    action index (resolutions, then skips), -1 where the frame was not looked at."""
    acts = _numpy(actions)
    names = [str(int(r)) for r in model_resolutions] + [f"{SKIP} {int(k)}" for k in skip_steps]
    return {name: int(np.sum(acts == index)) for index, name in enumerate(names)}


def frame_accounting(resolutions: object, looked_at: object, exit_step: object,
                     exited_early: object) -> dict[str, int]:
    """Every (video, frame) slot by what happened to it: ``processed``, ``skipped`` (the selector
    chose a skip), ``inside_skip`` (covered by an earlier skip decision) or ``after_exit``."""
    res, looked = _numpy(resolutions), _numpy(looked_at).astype(bool)
    exit_step, exited = _numpy(exit_step), _numpy(exited_early).astype(bool)
    steps = np.arange(res.shape[1])[None, :]
    after = exited[:, None] & (steps > exit_step[:, None])
    return {
        "processed": int(np.sum(res > 0)),
        "skipped": int(np.sum(looked & (res == 0))),
        "inside_skip": int(np.sum(~looked & ~after)),
        "after_exit": int(np.sum(after)),
    }


def exit_step_histogram(exit_step: object, exited_early: object, frames: int) -> dict[str, int]:
    """Videos by the (0-based) step at which the gate exited; ``"none"``: never exited."""
    steps, exited = _numpy(exit_step), _numpy(exited_early).astype(bool)
    hist = {str(t): int(np.sum(exited & (steps == t))) for t in range(frames)}
    hist[NO_EXIT] = int(np.sum(~exited))
    return hist


def calibration_error(confidences: object, correct: object, bins: int = ECE_BINS) -> float:
    """Expected calibration error in percent: ``sum_b |B_b| / N * |accuracy(B_b) -
    mean confidence(B_b)|`` over ``bins`` equal-width bins of ``(b-1)/bins, b/bins]`` (a
    confidence of 0 goes to the first bin); NaN without videos.

    ``confidences`` ``(N,)`` in [0, 1] (usually the top-1 probability), ``correct`` ``(N,)`` bool.
    """
    conf = _numpy(confidences).astype(np.float64).ravel()
    hit = _numpy(correct).astype(bool).ravel()
    if conf.shape != hit.shape:
        raise ValueError(f"{conf.shape[0]} confidences but {hit.shape[0]} correctness values")
    if bins < 1:
        raise ValueError(f"need at least one bin, got {bins}")
    if len(conf) == 0:
        return float("nan")
    if np.any((conf < 0) | (conf > 1)) or np.any(np.isnan(conf)):
        raise ValueError("confidences must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.digitize(conf, edges[1:-1], right=True)  # edges[b] < conf <= edges[b + 1]
    # per bin |B_b| * |accuracy - mean confidence| = |hits - summed confidence|
    gaps = np.abs(np.bincount(which, hit, bins) - np.bincount(which, conf, bins))
    return float(100.0 * gaps.sum() / len(conf))


def expected_calibration_error(
    probabilities: object, labels: object, bins: int = ECE_BINS
) -> float:
    """:func:`calibration_error` of the top-1 predictions of ``probabilities`` ``(N, C)`` (each
    row a distribution over the classes) against ``labels`` ``(N,)``, in percent."""
    probs, labels = _numpy(probabilities), _numpy(labels)
    if len(labels) == 0:
        return float("nan")
    return calibration_error(probs.max(axis=1), probs.argmax(axis=1) == labels, bins)


def per_class_table(
    predicted: object, labels: object, frames_processed: object, gflops: object,
    classes: Sequence[str],
) -> dict[str, dict[str, float | int]]:
    """Per class (name, in label order): its ``videos``, their ``top1`` (%) and mean
    ``frames_processed`` and ``gflops_per_video`` (NaN for a class without videos)."""
    predicted, labels = _numpy(predicted), _numpy(labels)
    processed, gflops = _numpy(frames_processed), _numpy(gflops)
    table: dict[str, dict[str, float | int]] = {}
    for index, name in enumerate(classes):
        rows = labels == index
        n = int(rows.sum())
        table[name] = {
            "videos": n,
            "top1": float(100.0 * np.mean(predicted[rows] == index)) if n else float("nan"),
            "frames_processed": float(processed[rows].mean()) if n else float("nan"),
            "gflops_per_video": float(gflops[rows].mean()) if n else float("nan"),
        }
    return table


def confusion_matrix(predicted: object, labels: object, num_classes: int) -> np.ndarray:
    """Video counts ``(num_classes, num_classes)``: row = true class, column = predicted."""
    predicted, labels = _numpy(predicted).astype(int), _numpy(labels).astype(int)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


__all__ = [
    "ECE_BINS",
    "NO_EXIT",
    "SKIP",
    "action_histogram",
    "average_precision",
    "calibration_error",
    "confusion_matrix",
    "exit_step_histogram",
    "expected_calibration_error",
    "frame_accounting",
    "mean_average_precision",
    "per_class_table",
    "resolution_histogram",
    "top1_accuracy",
]
