"""The U-Net's inference fast path: the same weights and math as its eager modules, run faster at batch 1.

Per chunk, every residual block's FiLM scale/bias for all sampling steps comes from a single matmul (each
block's FiLM encoder is Mish then Linear on the same condition). Per step, the network runs channels-last
(B, T, C) with every convolution as one matmul over unfolded windows (im2col): at batch 1 the horizon is a
few frames long, where PyTorch's CPU convolution spends most of its time outside the arithmetic. Outputs
equal the eager path's to float rounding (tests/test_policy.py checks both samplers' actions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .compiled import compiled
from .samplers import ChunkDenoiser

if TYPE_CHECKING:
    from .denoiser_unet import Conv1dBlock, FiLMResidualBlock, UNet1dDenoiser


def chunk_denoiser(unet: UNet1dDenoiser, cond: Tensor, compile_mode: str | None = None) -> ChunkDenoiser:
    """`f(x_t, i)` for the condition vectors `cond` (n steps, B, D) of one chunk; each step compiled with
    `compile_mode` when given."""
    n = cond.shape[0]
    mats, film_weight, film_bias = _inference_weights(unet)
    all_films = F.linear(F.mish(cond), film_weight, film_bias).unsqueeze(2)  # (n, B, 1, sum of widths)
    # Cut per block into scale and bias (or bias alone), broadcast over time.
    films, start = [], 0
    for block in unet.residual_blocks():
        width = block.out_channels * (2 if block.use_scale else 1)
        film = all_films[..., start : start + width]
        start += width
        films.append(film.split(block.out_channels, dim=-1) if block.use_scale else (None, film))
    # Regrouped by step ([step][block] -> (scale, bias)) so a step does no indexing of its own.
    per_step = list(zip(*[zip([None] * n if scale is None else scale.unbind(0), bias.unbind(0))
                          for scale, bias in films]))
    step = _forward if compile_mode is None else compiled(_forward, compile_mode)
    return lambda x, i: step(unet, x, per_step[i], mats)


def _inference_weights(unet: UNet1dDenoiser) -> tuple[dict[nn.Module, Tensor], Tensor, Tensor]:
    """Convolution weights as matmul operands, and all FiLM layers stacked into one. Rebuilt per chunk
    (under a millisecond): checking whether any of ~100 parameters changed would cost more."""
    mats = {
        conv: conv.weight.view(conv.weight.shape[0], -1) if isinstance(conv, nn.ConvTranspose1d)
        else conv.weight.view(conv.out_channels, -1).t()
        for conv in unet.modules() if isinstance(conv, (nn.Conv1d, nn.ConvTranspose1d))
    }
    linears = [block.cond_encoder[1] for block in unet.residual_blocks()]
    return mats, torch.cat([lin.weight for lin in linears]), torch.cat([lin.bias for lin in linears])


def _forward(unet: UNet1dDenoiser, x: Tensor, films: tuple, mats: dict[nn.Module, Tensor]) -> Tensor:
    """`UNet1dDenoiser._forward` with the FiLM of one step given, block by block."""
    films = iter(films)
    h, skips = x, []  # (B, T, C): time-major, so a convolution window is a contiguous slice
    for res1, res2, down in unet.down:
        h = _block(res2, _block(res1, h, next(films), mats), next(films), mats)
        skips.append(h)
        if not isinstance(down, nn.Identity):
            h = _conv(h, down, mats[down])
    for res in unet.mid:
        h = _block(res, h, next(films), mats)
    for res1, res2, up in unet.up:
        h = torch.cat([h, skips.pop()], dim=-1)
        h = _block(res2, _block(res1, h, next(films), mats), next(films), mats)
        h = _conv_transpose(h, up, mats[up])
    return _conv(_conv_block(unet.head[0], h, mats), unet.head[1], mats[unet.head[1]])


def _conv(h: Tensor, conv: nn.Conv1d, mat: Tensor) -> Tensor:
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


def _conv_transpose(h: Tensor, conv: nn.ConvTranspose1d, mat: Tensor) -> Tensor:
    """`conv` (upsampling) applied to h (B, T, C_in): one matmul gives every input frame's k output taps,
    which fold then overlap-adds into place; `mat` is its weight as (C_in, C_out * k)."""
    B, T, c_in = h.shape
    (k,), (stride,), (pad,) = conv.kernel_size, conv.stride, conv.padding
    taps = torch.mm(h.reshape(-1, c_in), mat).view(B, T, -1).transpose(1, 2)
    full = F.fold(taps, output_size=(1, (T - 1) * stride + k), kernel_size=(1, k), stride=(1, stride))
    return (full[:, :, 0, pad : full.shape[-1] - pad] + conv.bias[:, None]).transpose(1, 2)


def _conv_block(block: Conv1dBlock, h: Tensor, mats: dict[nn.Module, Tensor]) -> Tensor:
    conv, norm, _ = block
    h = _conv(h, conv, mats[conv])
    h = F.group_norm(h.transpose(1, 2), norm.num_groups, norm.weight, norm.bias, norm.eps).transpose(1, 2)
    return F.mish(h)


def _block(block: FiLMResidualBlock, h: Tensor, film: tuple, mats: dict[nn.Module, Tensor]) -> Tensor:
    scale, bias = film
    y = _conv_block(block.conv1, h, mats)
    y = y + bias if scale is None else torch.addcmul(bias, scale, y)
    residual = h if isinstance(block.residual, nn.Identity) else _conv(h, block.residual, mats[block.residual])
    return _conv_block(block.conv2, y, mats) + residual
