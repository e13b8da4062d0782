"""Real-time chunking (Black et al. 2025) for a diffusion policy, as inpainting of the clean-sample estimate.

While a chunk is being computed the robot keeps executing the previous one, so the first `inference_delay`
actions of the new chunk are already decided: they are held to the previous chunk. The rest of the overlap
with the previous chunk is pulled toward it under a weight that decays to 0, which removes the jump at the
chunk boundary while letting the new chunk react to the new observation. Flow policies do this with a
gradient-guided velocity; a diffusion sampler exposes its clean-sample estimate x0 at every step, so here
the guidance is the rewrite  x0 <- x0 + W * (prev - x0)  (the model's eps is left as it is).

The weights follow LeRobot's `RTCConfig.prefix_attention_schedule`, so `--inference.rtc.*` means the same
for this policy as for LeRobot's flow policies: LINEAR (LeRobot's default), EXP (the paper's), ZEROS (hold
only the delayed actions) or ONES (hold the whole overlap).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .samplers import Guide

SCHEDULES = ("LINEAR", "EXP", "ZEROS", "ONES")


def overlap_length(prev: Tensor) -> int:
    """Number of real actions in `prev` (T, A) or (B, T, A).

    LeRobot's RTC loop pads the left-over of the previous chunk with zero rows up to `execution_horizon`;
    those rows are not actions and must not pull the new chunk toward 0. A real normalised action with
    every coordinate exactly 0.0 does not occur in practice, so trailing all-zero rows are taken as padding.
    """
    rows = prev.reshape(-1, prev.shape[-2], prev.shape[-1]).ne(0).any(dim=-1).any(dim=0)
    nonzero = rows.nonzero()
    return int(nonzero[-1]) + 1 if nonzero.numel() else 0


def prefix_weights(delay: int, overlap: int, total: int, schedule: str = "LINEAR") -> Tensor:
    """Guidance weights (total,) over the returned chunk positions.

    1 for the first `delay` positions (executed while this chunk is computed), then decaying toward 0
    over the rest of the overlap with the previous chunk, 0 from position `overlap` on. With
    c_i = (overlap - i) / (overlap - delay + 1): LINEAR is c_i, EXP is c_i * (e^c_i - 1) / (e - 1)
    (Black et al. 2025, eq. 5).
    """
    schedule = str(getattr(schedule, "value", schedule)).upper()
    if schedule not in SCHEDULES:
        raise ValueError(f"RTC schedule must be one of {SCHEDULES}, got {schedule!r}")
    overlap = max(0, min(overlap, total))
    delay = max(0, min(delay, overlap))
    w = torch.zeros(total)
    w[:delay] = 1.0
    if schedule == "ONES":
        w[:overlap] = 1.0
    elif schedule in ("LINEAR", "EXP"):
        i = torch.arange(delay, overlap, dtype=torch.float32)
        c = (overlap - i) / (overlap - delay + 1)
        w[delay:overlap] = c if schedule == "LINEAR" else c * torch.expm1(c) / (math.e - 1)
    return w


def make_guide(
    prev: Tensor | None, delay: int, start: int, horizon: int, chunk_len: int, schedule: str = "LINEAR",
    max_overlap: int | None = None,
) -> Guide | None:
    """The x0 rewrite for `samplers.denoise(..., guide_x0=...)`, or None when there is nothing to follow.

    `prev` (T, A) or (B, T, A) is the previous chunk's unexecuted remainder, in the same normalised space
    as the policy output; prev[i] is the action planned for the same control step as returned position i,
    which is horizon position `start + i` (the returned chunk is horizon[start : start + chunk_len]).
    """
    if prev is None:
        return None
    overlap = min(overlap_length(prev), chunk_len, horizon - start)
    if max_overlap is not None:
        overlap = min(overlap, max_overlap)
    if overlap == 0:
        return None
    prev = prev if prev.dim() == 3 else prev.unsqueeze(0)
    weights = torch.zeros(1, horizon, 1, dtype=prev.dtype, device=prev.device)
    weights[0, start : start + overlap, 0] = prefix_weights(delay, overlap, overlap, schedule)
    # The previous chunk laid on the horizon once; where the weight is 0 lerp returns x0 unchanged.
    target = torch.zeros(prev.shape[0], horizon, prev.shape[-1], dtype=prev.dtype, device=prev.device)
    target[:, start : start + overlap] = prev[:, :overlap]

    def guide(x0: Tensor) -> Tensor:
        # lerp returns `target` exactly where the weight is 1 (unlike x0 + w * (target - x0)), so the
        # held actions equal the previous chunk bit for bit after the last denoising step.
        return torch.lerp(x0, target.to(x0), weights.to(x0))

    return guide
