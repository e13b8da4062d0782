"""1D temporal U-Net denoiser with FiLM conditioning (the paper's DP-C).

The noisy action chunk (B, horizon, action_dim) is treated as a 1D signal over time with the action
dimensions as channels. Every residual block is conditioned on [diffusion step embedding, global
observation feature] by FiLM: a per-channel scale and bias.

Inference has a fast path (`fast_inference`): the same weights and math, run channels-last with convolutions
as matmuls (unet_fast_path.py), each block by its `fast_forward`, with every block's FiLM for every sampling
step computed once per chunk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import unet_fast_path
from .compiled import compiled
from .denoiser_common import DiffusionStepEmbedding
from .samplers import ChunkDenoiser

if TYPE_CHECKING:
    from .configuration_diffusion_plus import DiffusionPlusConfig

# Convolution -> its weight as a matmul operand (unet_fast_path.matmul_weights), built once per chunk.
Mats = dict[nn.Module, Tensor]


class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish, length preserving."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int):
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_channels),
            nn.Mish(),
        )

    def fast_forward(self, h: Tensor, mats: Mats) -> Tensor:
        """`forward` on channels-last h (B, T, C)."""
        conv, norm, _ = self
        h = unet_fast_path.conv(h, conv, mats[conv])
        h = F.group_norm(h.transpose(1, 2), norm.num_groups, norm.weight, norm.bias, norm.eps).transpose(1, 2)
        return F.mish(h)


class FiLMResidualBlock(nn.Module):
    def __init__(self, in_channels, out_channels, cond_dim, kernel_size, n_groups, use_scale=True):
        super().__init__()
        self.out_channels = out_channels
        self.use_scale = use_scale
        self.conv1 = Conv1dBlock(in_channels, out_channels, kernel_size, n_groups)
        self.cond_encoder = nn.Sequential(
            nn.Mish(), nn.Linear(cond_dim, out_channels * (2 if use_scale else 1))
        )
        self.conv2 = Conv1dBlock(out_channels, out_channels, kernel_size, n_groups)
        self.residual = (
            nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = self.conv1(x)
        film = self.cond_encoder(cond).unsqueeze(-1)  # (B, C or 2C, 1): broadcast over time
        if self.use_scale:
            scale, bias = film.split(self.out_channels, dim=1)
            h = scale * h + bias
        else:
            h = h + film
        return self.conv2(h) + self.residual(x)

    def fast_forward(self, h: Tensor, film: tuple[Tensor | None, Tensor], mats: Mats) -> Tensor:
        """`forward` on channels-last h (B, T, C), given the FiLM (scale or None, bias) of its condition."""
        scale, bias = film
        y = self.conv1.fast_forward(h, mats)
        y = y + bias if scale is None else torch.addcmul(bias, scale, y)
        res = self.residual
        residual = h if isinstance(res, nn.Identity) else unet_fast_path.conv(h, res, mats[res])
        return self.conv2.fast_forward(y, mats) + residual


class UNet1dDenoiser(nn.Module):
    """`forward(x_t (B, T, A), timestep (B,), obs_features (B, n_obs, D)) -> (B, T, A)`.

    The observation features of all steps are flattened into one global condition, as the paper.
    `fast_inference` picks how `conditioned` runs the network (the fast path or the eager modules); training
    always runs the eager modules.
    """

    block = FiLMResidualBlock  # the repeated block, for FSDP wrapping

    def __init__(
        self,
        action_dim: int,
        obs_feature_dim: int,
        *,
        n_obs_steps: int,
        down_dims: tuple[int, ...],
        kernel_size: int,
        n_groups: int,
        diffusion_step_embed_dim: int,
        use_film_scale_modulation: bool,
        fast_inference: bool,
    ):
        super().__init__()
        dims = tuple(down_dims)
        k, g = kernel_size, n_groups
        self.fast_inference = fast_inference
        self.step_embedding = DiffusionStepEmbedding(diffusion_step_embed_dim)
        cond_dim = diffusion_step_embed_dim + obs_feature_dim * n_obs_steps

        def block(cin, cout):
            return FiLMResidualBlock(cin, cout, cond_dim, k, g, use_film_scale_modulation)

        levels = list(zip((action_dim, *dims[:-1]), dims))
        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(levels):
            last = i == len(levels) - 1
            down = nn.Identity() if last else nn.Conv1d(cout, cout, 3, stride=2, padding=1)
            self.down.append(nn.ModuleList([block(cin, cout), block(cout, cout), down]))
        self.mid = nn.ModuleList([block(dims[-1], dims[-1]), block(dims[-1], dims[-1])])
        # Up path mirrors the down path; each level takes the skip of its twin, doubling the input channels.
        self.up = nn.ModuleList()
        # Every up level upsamples, undoing the len(dims) - 1 halvings of the down path.
        for cin, cout in reversed(levels[1:]):
            up = nn.ConvTranspose1d(cin, cin, 4, stride=2, padding=1)
            self.up.append(nn.ModuleList([block(cout * 2, cin), block(cin, cin), up]))
        self.head = nn.Sequential(Conv1dBlock(dims[0], dims[0], k, g), nn.Conv1d(dims[0], action_dim, 1))

    @classmethod
    def from_config(
        cls, config: DiffusionPlusConfig, action_dim: int, obs_feature_dim: int
    ) -> UNet1dDenoiser:
        return cls(
            action_dim, obs_feature_dim,
            n_obs_steps=config.n_obs_steps,
            down_dims=tuple(config.down_dims),
            kernel_size=config.kernel_size,
            n_groups=config.n_groups,
            diffusion_step_embed_dim=config.diffusion_step_embed_dim,
            use_film_scale_modulation=config.use_film_scale_modulation,
            fast_inference=config.fast_inference,
        )

    def forward(self, x: Tensor, timestep: Tensor, obs_features: Tensor) -> Tensor:
        cond = torch.cat([self.step_embedding(timestep), obs_features.flatten(1)], dim=-1)
        return self._forward(x, cond)

    def _forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = x.transpose(1, 2)  # (B, A, T): channels first for Conv1d
        skips = []
        for res1, res2, down in self.down:
            h = res2(res1(h, cond), cond)
            skips.append(h)
            h = down(h)
        for res in self.mid:
            h = res(h, cond)
        for res1, res2, up in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = up(res2(res1(h, cond), cond))
        return self.head(h).transpose(1, 2)

    def conditioned(self, obs_features: Tensor, timesteps: Tensor, compile_mode: str | None = None) -> ChunkDenoiser:
        """The denoiser for one chunk, as `f(x_t, i)` evaluated at `timesteps[i]` (sampling order).

        The conditioning vector of every step depends only on the observation and the step: it is computed
        here, once per chunk. The fast path also precomputes every block's FiLM from it. With `compile_mode`
        each step runs compiled (compiled.py).
        """
        n, B = timesteps.shape[0], obs_features.shape[0]
        emb = self.step_embedding(timesteps)[:, None].expand(n, B, -1)
        cond = torch.cat([emb, obs_features.flatten(1)[None].expand(n, B, -1)], dim=-1)  # (n, B, D)
        if self.fast_inference:
            return self._fast_conditioned(cond, compile_mode)
        step = UNet1dDenoiser._forward
        if compile_mode is not None:
            step = compiled(step, compile_mode)
        return lambda x, i: step(self, x, cond[i])

    def _fast_conditioned(self, cond: Tensor, compile_mode: str | None) -> ChunkDenoiser:
        """The fast path's `f(x_t, i)` for the condition vectors `cond` (n steps, B, D) of one chunk."""
        n = cond.shape[0]
        blocks = self.residual_blocks()
        mats = unet_fast_path.matmul_weights(self)
        # Every block's FiLM encoder is Mish then Linear of the same condition: Mish once, then each block's
        # Linear for every step of the chunk at once (one matmul over their concatenated weights would first
        # copy their weights into fresh memory per chunk, 3.7 MB at the CPU robot recipe: slower than twelve).
        mished = F.mish(cond)
        films = []
        for block in blocks:
            lin = block.cond_encoder[1]
            film = F.linear(mished, lin.weight, lin.bias).unsqueeze(2)  # (n, B, 1, width): broadcast over time
            # Scale and bias, or bias alone.
            films.append(film.split(block.out_channels, dim=-1) if block.use_scale else (None, film))
        # Regrouped by step ([step][block] -> (scale, bias)) so a step does no indexing of its own.
        per_step = list(zip(*[zip([None] * n if scale is None else scale.unbind(0), bias.unbind(0))
                              for scale, bias in films]))
        step = UNet1dDenoiser._fast_forward
        if compile_mode is not None:
            step = compiled(step, compile_mode)
        return lambda x, i: step(self, x, per_step[i], mats)

    def _fast_forward(self, x: Tensor, films: tuple, mats: Mats) -> Tensor:
        """`_forward` channels-last, with each residual block's FiLM of this step (`residual_blocks` order)."""
        films = iter(films)
        h, skips = x, []  # (B, T, C): time-major, so a convolution window is a contiguous slice
        for res1, res2, down in self.down:
            h = res2.fast_forward(res1.fast_forward(h, next(films), mats), next(films), mats)
            skips.append(h)
            if not isinstance(down, nn.Identity):
                h = unet_fast_path.conv(h, down, mats[down])
        for res in self.mid:
            h = res.fast_forward(h, next(films), mats)
        for res1, res2, up in self.up:
            h = torch.cat([h, skips.pop()], dim=-1)
            h = res2.fast_forward(res1.fast_forward(h, next(films), mats), next(films), mats)
            h = unet_fast_path.conv_transpose(h, up, mats[up])
        return unet_fast_path.conv(self.head[0].fast_forward(h, mats), self.head[1], mats[self.head[1]])

    def residual_blocks(self) -> list[FiLMResidualBlock]:
        """Residual blocks in the order `forward` runs them."""
        down = [b for res1, res2, _ in self.down for b in (res1, res2)]
        up = [b for res1, res2, _ in self.up for b in (res1, res2)]
        return down + list(self.mid) + up

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(decayed, not decayed): the reference applies its small weight decay to every U-Net weight."""
        return list(self.parameters()), []
