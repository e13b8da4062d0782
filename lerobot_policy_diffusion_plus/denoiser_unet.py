"""1D temporal U-Net denoiser with FiLM conditioning (the paper's DP-C).

The noisy action chunk (B, horizon, action_dim) is treated as a 1D signal over time with the action
dimensions as channels. Every residual block is conditioned on [diffusion step embedding, global
observation feature] by FiLM: a per-channel scale and bias.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .denoiser_common import DiffusionStepEmbedding


class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish, length preserving."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int):
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_channels),
            nn.Mish(),
        )


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


class UNet1dDenoiser(nn.Module):
    """`forward(x_t (B, T, A), timestep (B,), obs_features (B, n_obs, D)) -> (B, T, A)`.

    The observation features of all steps are flattened into one global condition, as the paper.
    """

    def __init__(self, action_dim: int, obs_feature_dim: int, config):
        super().__init__()
        dims = tuple(config.down_dims)
        k, g, scale = config.kernel_size, config.n_groups, config.use_film_scale_modulation
        self.step_embedding = DiffusionStepEmbedding(config.diffusion_step_embed_dim)
        cond_dim = config.diffusion_step_embed_dim + obs_feature_dim * config.n_obs_steps

        def block(cin, cout):
            return FiLMResidualBlock(cin, cout, cond_dim, k, g, scale)

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

    def conditioned(self, obs_features: Tensor, timesteps: Tensor, fast: bool = True) -> Callable[[Tensor, int], Tensor]:
        """The denoiser for one chunk, as `f(x_t, i)` evaluated at `timesteps[i]` (sampling order).

        Everything that depends only on the observation and the step is computed here, once per chunk:
        the conditioning vectors and, on the fast path, every block's FiLM scale/bias for all steps in a
        single matmul. The fast path then runs the U-Net channels-last with convolutions as a single
        matmul each (im2col): at batch 1 the horizon is a few frames long, where PyTorch's CPU convolution
        spends most of its time outside the arithmetic. Same weights, same math; float rounding differs.
        """
        n, B = timesteps.shape[0], obs_features.shape[0]
        emb = self.step_embedding(timesteps)[:, None].expand(n, B, -1)
        cond = torch.cat([emb, obs_features.flatten(1)[None].expand(n, B, -1)], dim=-1)  # (n, B, D)
        if not fast:
            return lambda x, i: self._forward(x, cond[i])
        mats, film_weight, film_bias = self._inference_weights()
        # Every block's FiLM of every step in one matmul (each block's encoder is Mish then Linear on the
        # same condition), then cut per block into scale and bias (or bias alone), broadcast over time.
        all_films = F.linear(F.mish(cond), film_weight, film_bias).unsqueeze(2)  # (n, B, 1, sum of widths)
        films, start = [], 0
        for block in self._blocks():
            width = block.out_channels * (2 if block.use_scale else 1)
            film = all_films[..., start : start + width]
            start += width
            films.append(film.split(block.out_channels, dim=-1) if block.use_scale else (None, film))
        # Regrouped by step ([step][block] -> (scale, bias)) so a step does no indexing of its own.
        per_step = list(zip(*[zip([None] * n if scale is None else scale.unbind(0), bias.unbind(0))
                              for scale, bias in films]))
        return lambda x, i: self._fast_forward(x, per_step[i], mats)

    def _inference_weights(self) -> tuple[dict[nn.Module, Tensor], Tensor, Tensor]:
        """Convolution weights as matmul operands, and all FiLM layers stacked into one. Rebuilt per chunk
        (under a millisecond): checking whether any of ~100 parameters changed would cost more."""
        mats = {
            conv: conv.weight.view(conv.weight.shape[0], -1) if isinstance(conv, nn.ConvTranspose1d)
            else conv.weight.view(conv.out_channels, -1).t()
            for conv in self.modules() if isinstance(conv, (nn.Conv1d, nn.ConvTranspose1d))
        }
        linears = [block.cond_encoder[1] for block in self._blocks()]
        return mats, torch.cat([lin.weight for lin in linears]), torch.cat([lin.bias for lin in linears])

    def _blocks(self) -> list[FiLMResidualBlock]:
        """Residual blocks in the order `_forward` runs them."""
        down = [b for res1, res2, _ in self.down for b in (res1, res2)]
        up = [b for res1, res2, _ in self.up for b in (res1, res2)]
        return down + list(self.mid) + up

    def _fast_forward(self, x: Tensor, films: tuple, mats: dict[nn.Module, Tensor]) -> Tensor:
        films = iter(films)
        h, skips = x, []  # (B, T, C): time-major, so a convolution window is a contiguous slice
        for res1, res2, down in self.down:
            h = _fast_block(res2, _fast_block(res1, h, next(films), mats), next(films), mats)
            skips.append(h)
            if not isinstance(down, nn.Identity):
                h = _conv_time_major(h, down, mats[down])
        for res in self.mid:
            h = _fast_block(res, h, next(films), mats)
        for res1, res2, up in self.up:
            h = torch.cat([h, skips.pop()], dim=-1)
            h = _fast_block(res2, _fast_block(res1, h, next(films), mats), next(films), mats)
            h = _conv_transpose_time_major(h, up, mats[up])
        return _conv_time_major(_fast_conv_block(self.head[0], h, mats), self.head[1], mats[self.head[1]])

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(decayed, not decayed): the reference applies its small weight decay to every U-Net weight."""
        return list(self.parameters()), []


def _conv_time_major(h: Tensor, conv: nn.Conv1d, mat: Tensor) -> Tensor:
    """`conv` applied to h (B, T, C_in) -> (B, T', C_out) as one matmul over unfolded windows;
    `mat` is its weight as (C_in * k, C_out)."""
    B, _, c_in = h.shape
    (k,), (stride,), (pad,) = conv.kernel_size, conv.stride, conv.padding
    if k == 1:
        cols = h.reshape(-1, c_in)
    else:
        # Windows (B, T', C_in, k) flatten in the order of the weight's (C_in, k) axes.
        cols = F.pad(h, (0, 0, pad, pad)).unfold(1, k, stride).reshape(-1, c_in * k)
    out = torch.addmm(conv.bias, cols, mat)
    return out.view(B, -1, conv.out_channels)


def _conv_transpose_time_major(h: Tensor, conv: nn.ConvTranspose1d, mat: Tensor) -> Tensor:
    """`conv` (upsampling) applied to h (B, T, C_in): one matmul gives every input frame's k output taps,
    which fold then overlap-adds into place; `mat` is its weight as (C_in, C_out * k)."""
    B, T, c_in = h.shape
    (k,), (stride,), (pad,) = conv.kernel_size, conv.stride, conv.padding
    taps = torch.mm(h.reshape(-1, c_in), mat).view(B, T, -1).transpose(1, 2)
    full = F.fold(taps, output_size=(1, (T - 1) * stride + k), kernel_size=(1, k), stride=(1, stride))
    return (full[:, :, 0, pad : full.shape[-1] - pad] + conv.bias[:, None]).transpose(1, 2)


def _fast_conv_block(block: Conv1dBlock, h: Tensor, mats: dict[nn.Module, Tensor]) -> Tensor:
    conv, norm, _ = block
    h = _conv_time_major(h, conv, mats[conv])
    h = F.group_norm(h.transpose(1, 2), norm.num_groups, norm.weight, norm.bias, norm.eps).transpose(1, 2)
    return F.mish(h)


def _fast_block(block: FiLMResidualBlock, h: Tensor, film: tuple, mats: dict[nn.Module, Tensor]) -> Tensor:
    scale, bias = film
    y = _fast_conv_block(block.conv1, h, mats)
    y = y + bias if scale is None else torch.addcmul(bias, scale, y)
    residual = h if isinstance(block.residual, nn.Identity) else _conv_time_major(h, block.residual, mats[block.residual])
    return _fast_conv_block(block.conv2, y, mats) + residual
