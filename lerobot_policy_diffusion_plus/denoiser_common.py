"""What every denoiser provides (`Denoiser`), and the pieces both denoisers share."""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor, nn

from .samplers import ChunkDenoiser


class Denoiser(Protocol):
    """The network that predicts the noise (or the clean chunk) of a noisy action chunk.

    An `nn.Module`: calling it runs `forward`. `DiffusionPlusModel` builds one with `from_config` (the class
    its config's registration names, see registry.py) and uses it through these methods only.
    """

    block: type[nn.Module]  # the repeated block: the policy's FSDP wrapping unit

    @classmethod
    def from_config(cls, config, action_dim: int, obs_feature_dim: int) -> "Denoiser":
        """Built from its config's fields, for actions of `action_dim` and observation features of
        `obs_feature_dim` per step."""
        ...

    def forward(self, x_t: Tensor, timestep: Tensor, obs_features: Tensor) -> Tensor:
        """x_t (B, horizon, A), timestep (B,), obs_features (B, n_obs_steps, D) -> (B, horizon, A)."""
        ...

    def conditioned(self, obs_features: Tensor, timesteps: Tensor, compile_mode: str | None = None) -> ChunkDenoiser:
        """This denoiser bound to one chunk's observation features, as `f(x_t, i)` evaluated at `timesteps[i]`
        (sampling order), with whatever depends only on the observation and the step computed once here.
        `compile_mode`: run each step through torch.compile in that mode (compiled.py)."""
        ...

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(weights with weight decay, weights without)."""
        ...


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """Transformer-style sin/cos features of the diffusion step t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(10000) / (half - 1)))
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class DiffusionStepEmbedding(nn.Module):
    """Sinusoidal features followed by a small MLP (U-Net step conditioning)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.Mish(), nn.Linear(dim * 4, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(t, self.dim))
