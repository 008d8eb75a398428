"""Loss terms of the three RSEE stages, exit-gate training and cross-resolution distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def step_cross_entropy(step_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy ``(B, T)`` of the prediction after every step against the video's label."""
    batch, steps, classes = step_logits.shape
    return F.cross_entropy(
        step_logits.reshape(-1, classes), labels.repeat_interleave(steps), reduction="none"
    ).view(batch, steps)


def accuracy_loss(
    step_logits: torch.Tensor, labels: torch.Tensor, seen: torch.Tensor, step_weight: float
) -> torch.Tensor:
    """Cross-entropy of the final prediction plus ``step_weight`` times the mean cross-entropy
    of the predictions after each step that follows at least one processed frame (so that early
    exits find a usable prediction). ``seen`` is ``(B, T)`` bool."""
    final = F.cross_entropy(step_logits[:, -1], labels)
    if step_weight <= 0:
        return final
    per_step = step_cross_entropy(step_logits, labels)
    weights = seen.float()
    per_step = (per_step * weights).sum() / weights.sum().clamp_min(1.0)
    return (1 - step_weight) * final + step_weight * per_step


def efficiency_loss(
    gmacs: torch.Tensor, uniform_gmacs: float, target: float | None = None
) -> torch.Tensor:
    """AR-Net's FLOPs term, as a fraction of what Uniform spends on the same video.

    With ``target`` (a fraction), only the cost above it is penalised: a budget rather than a
    push towards zero, so the policy is not driven onto skips once it is cheap enough."""
    fraction = gmacs / uniform_gmacs
    if target is None:
        return fraction.mean()
    return torch.relu(fraction - target).mean()


def soft_exit_hazard(
    scores: torch.Tensor, processed: torch.Tensor, threshold: float, temperature: float
) -> torch.Tensor:
    """Differentiable stand-in for the exit rule ``score >= threshold``: the probability of
    exiting at each step, ``sigmoid((score - threshold) / temperature)``, on processed steps only
    (an exit is decided after a processed frame). ``scores`` and ``processed`` are ``(B, T)``."""
    return torch.sigmoid((scores - threshold) / temperature) * processed


def exit_distribution(hazard: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Survival and exit mass ``(B, T)`` of per-step exit probabilities ``hazard``.

    ``survival[:, t]`` is the probability that the video is still running when frame t arrives
    (``prod_{k<t} (1 - hazard_k)``, 1 at t = 0): what frame t's cost is paid with.
    ``mass[:, t]`` is the probability that its prediction is the one reported: exiting at t
    (``survival_t * hazard_t``), and at the last step everything still running. Rows sum to 1."""
    still = torch.cumprod(1 - hazard, dim=1)
    survival = torch.cat([torch.ones_like(still[:, :1]), still[:, :-1]], dim=1)
    mass = survival * hazard
    mass = torch.cat([mass[:, :-1], survival[:, -1:]], dim=1)
    return survival, mass


def expected_cost(step_gmacs: torch.Tensor, survival: torch.Tensor) -> torch.Tensor:
    """GMACs per video ``(B,)`` expected under the exit: each step's cost ``(B, T)`` weighted by
    the probability that the video is still running then (frames after a likely exit cost
    little)."""
    return (step_gmacs * survival).sum(1)


def expected_exit_loss(
    step_logits: torch.Tensor, labels: torch.Tensor, mass: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the prediction the video reports, expected under the exit: the
    per-step cross-entropies weighted by the exit mass (:func:`exit_distribution`)."""
    return (step_cross_entropy(step_logits, labels) * mass).sum(1).mean()


def scheduled_budget(start: float | None, final: float | None, epoch: int, epochs: int
                     ) -> float | None:
    """The FLOPs budget of a joint epoch: ``start`` in the first, lowered linearly to ``final``
    in the last (``start`` ``None``: ``final`` throughout)."""
    if start is None or final is None or epochs <= 1:
        return final
    return start + (final - start) * epoch / (epochs - 1)


def usage_balance_loss(decisions: torch.Tensor, looked_at: torch.Tensor) -> torch.Tensor:
    """AR-Net's balance regulariser: squared distance of each action's frequency over the batch
    from the uniform frequency. ``decisions`` ``(B, T, A)`` one-hot (straight-through)."""
    mask = looked_at.unsqueeze(-1).float()
    usage = (decisions * mask).sum((0, 1)) / mask.sum().clamp_min(1.0)
    return ((usage - 1.0 / decisions.shape[-1]) ** 2).sum()


def exit_pseudo_labels(
    step_logits: torch.Tensor, labels: torch.Tensor, base_loss: float, cost_per_step: float
) -> torch.Tensor:
    """FrameExit-style targets: exiting at step t is right when the prediction there is correct
    and its loss is below a bound that grows with t (later exits tolerate more doubt)."""
    steps = step_logits.shape[1]
    loss = step_cross_entropy(step_logits, labels)
    correct = step_logits.argmax(-1) == labels.unsqueeze(1)
    bound = base_loss + cost_per_step * torch.arange(steps, device=step_logits.device)
    return (correct & (loss <= bound)).float()


def exit_gate_loss(
    exit_logits: torch.Tensor, targets: torch.Tensor, processed: torch.Tensor
) -> torch.Tensor:
    """Balanced binary cross-entropy of the gate on steps that processed a frame."""
    mask = processed > 0
    if not mask.any():
        return exit_logits.sum() * 0
    logits, target = exit_logits[mask], targets[mask]
    positives = target.mean().clamp(0.05, 0.95)
    weight = torch.where(target > 0, 0.5 / positives, 0.5 / (1 - positives))
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight)


def feature_map_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """ResKD's pixel-level term: MSE between the student's low-resolution feature map, resized
    to the teacher's spatial size, and the teacher's high-resolution map."""
    if student.shape[-2:] != teacher.shape[-2:]:
        student = F.interpolate(student, size=teacher.shape[-2:], mode="bilinear",
                                align_corners=False)
    return F.mse_loss(student, teacher.detach())


def gumbel_temperature(tau0: float, decay: float, epoch: int) -> float:
    """AR-Net's annealing: ``tau0 * exp(-decay * epoch)``."""
    return tau0 * float(torch.exp(torch.tensor(-decay * epoch)))


def noise_scale(final: float, epoch: int, epochs: int) -> float:
    """Gumbel noise scale of a joint epoch: 1 (sampling) in the first epoch, moving linearly to
    ``final`` in the last (0: the last epoch trains the argmax policy that inference runs)."""
    if epochs <= 1:
        return 1.0
    return 1.0 + (final - 1.0) * epoch / (epochs - 1)
