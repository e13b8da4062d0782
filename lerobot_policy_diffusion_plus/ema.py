"""Exponential moving average of a module's weights, with the Diffusion Policy reference schedule.

decay(k) = 1 - (1 + k / inv_gamma) ** -power, clamped to [0, max_decay], where k is the number of
updates so far less one (the reference's offset), so the first two updates copy the weights outright.
The averaged copy is a submodule, so it is saved in `model.safetensors` and restored by `from_pretrained`
together with its step count.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(step: int, inv_gamma: float, power: float, max_decay: float) -> float:
    k = max(0, step - 1)
    if k == 0:
        return 0.0
    return min(max(1 - (1 + k / inv_gamma) ** -power, 0.0), max_decay)


class EMA(nn.Module):
    def __init__(self, model: nn.Module, inv_gamma: float, power: float, max_decay: float):
        super().__init__()
        self.inv_gamma, self.power, self.max_decay = inv_gamma, power, max_decay
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        decay = ema_decay(int(self.step), self.inv_gamma, self.power, self.max_decay)
        averaged = list(self.model.parameters())
        # lerp: avg + (1 - decay) * (live - avg) == decay * avg + (1 - decay) * live, in one fused call.
        torch._foreach_lerp_(averaged, [p.detach() for p in model.parameters()], 1.0 - decay)
        for avg_buf, buf in zip(self.model.buffers(), model.buffers()):
            avg_buf.copy_(buf)
        self.step += 1
        return decay
