"""The resolution selector: a light CNN and a recurrent cell choosing a resolution or a skip."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SelectorState = tuple[torch.Tensor, ...]


class ResolutionSelector(nn.Module):
    """Looks at each frame at the lowest resolution and scores the action space.

    The CNN is optional: when the selector shares the backbone, the caller passes the backbone's
    features to :meth:`step` and ``cnn`` is ``None``.
    """

    def __init__(
        self,
        *,
        cnn: nn.Module | None,
        feature_dim: int,
        hidden_size: int,
        num_actions: int,
        rnn: str = "lstm",
    ) -> None:
        super().__init__()
        self.cnn = cnn
        self.rnn_type = rnn
        self.hidden_size = hidden_size
        cell = nn.LSTMCell if rnn == "lstm" else nn.GRUCell
        self.rnn = cell(feature_dim, hidden_size)
        self.policy = nn.Linear(hidden_size, num_actions)

    def initial_state(self, batch: int, device: torch.device) -> SelectorState:
        """Zero recurrent state for ``batch`` videos."""
        zeros = torch.zeros(batch, self.hidden_size, device=device)
        return (zeros, zeros.clone()) if self.rnn_type == "lstm" else (zeros,)

    def features(self, low_res_frames: torch.Tensor) -> torch.Tensor:
        """Selector CNN features ``(N, D)`` of frames at the selector's resolution."""
        if self.cnn is None:
            raise RuntimeError("this selector shares the backbone: pass backbone features")
        return self.cnn(low_res_frames)

    def step(
        self, features: torch.Tensor, state: SelectorState
    ) -> tuple[torch.Tensor, SelectorState]:
        """Advance the recurrent state by one looked-at frame; returns action logits."""
        if self.rnn_type == "lstm":
            hidden, cell = self.rnn(features, state)
            new_state: SelectorState = (hidden, cell)
        else:
            hidden = self.rnn(features, state[0])
            new_state = (hidden,)
        return self.policy(hidden), new_state


def masked_argmax(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Deterministic inference decision: the best allowed action per row."""
    return logits.masked_fill(~allowed, float("-inf")).argmax(dim=-1)


def gumbel_decision(
    logits: torch.Tensor, allowed: torch.Tensor, temperature: float, noise_scale: float = 1.0
) -> torch.Tensor:
    """Training decision: a hard one-hot Gumbel-softmax sample with straight-through gradients.

    ``noise_scale`` scales the Gumbel noise: 1 samples from the policy (AR-Net), 0 takes the
    argmax the deployed selector will take, with the same straight-through gradient. Written out
    because ``torch.nn.functional.gumbel_softmax`` cannot scale its noise; at scale 1 this is
    the same computation (same random draws, same values and gradients)."""
    masked = logits.masked_fill(~allowed, float("-inf"))
    noise = -torch.empty_like(masked).exponential_().log() * noise_scale
    soft = ((masked + noise) / temperature).softmax(-1)
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft
