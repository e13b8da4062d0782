"""Convolutions as matmuls, for the U-Net's inference fast path: the same weights and math, faster at batch 1.

The fast path runs the network channels-last (B, T, C) with every convolution as one matmul over unfolded
windows (im2col): at batch 1 the horizon is a few frames long, where PyTorch's CPU convolution spends most of
its time outside the arithmetic. Each block of denoiser_unet.py has a `fast_forward` built from these; this
module knows nothing of the U-Net's layout. Outputs equal the eager path's to float rounding
(tests/test_policy.py checks both samplers' actions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def matmul_weights(module: nn.Module) -> dict[nn.Module, Tensor]:
    """Every convolution in `module` -> its weight as the matmul operand `conv`/`conv_transpose` take. Rebuilt
    per chunk (under a millisecond): checking whether any of ~100 parameters changed would cost more."""
    return {
        conv: conv.weight.view(conv.weight.shape[0], -1) if isinstance(conv, nn.ConvTranspose1d)
        else conv.weight.view(conv.out_channels, -1).t()
        for conv in module.modules() if isinstance(conv, (nn.Conv1d, nn.ConvTranspose1d))
    }


def conv(h: Tensor, conv: nn.Conv1d, mat: Tensor) -> Tensor:
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


def conv_transpose(h: Tensor, conv: nn.ConvTranspose1d, mat: Tensor) -> Tensor:
    """`conv` (upsampling) applied to h (B, T, C_in): one matmul gives every input frame's k output taps,
    which fold then overlap-adds into place; `mat` is its weight as (C_in, C_out * k)."""
    B, T, c_in = h.shape
    (k,), (stride,), (pad,) = conv.kernel_size, conv.stride, conv.padding
    taps = torch.mm(h.reshape(-1, c_in), mat).view(B, T, -1).transpose(1, 2)
    full = F.fold(taps, output_size=(1, (T - 1) * stride + k), kernel_size=(1, k), stride=(1, stride))
    return (full[:, :, 0, pad : full.shape[-1] - pad] + conv.bias[:, None]).transpose(1, 2)
