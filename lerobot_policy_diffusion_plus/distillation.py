"""Consistency distillation: a student that maps noise to its teacher's action chunk in one denoiser call.

A trained policy samples a chunk with deterministic DDIM-N (N = 10 by default): an ODE trajectory from noise at
the first grid point t_0 down to t = 0, so the chunk is a function of the noise and the observation. The
student, the same network started from the teacher's weights, learns the consistency function of those
trajectories (Song et al. 2023): from a point x_t of a trajectory at any grid timestep t, the trajectory's end.
Its output is read as the teacher's was (noise or clean sample, `prediction_type`) and turned into that end,
so before training the student is the teacher's one-step DDIM estimate.

Why this objective. Consistency distillation proper bootstraps: the target is the student's own (averaged)
prediction one teacher step further along, which avoids solving the whole ODE per sample and needs long
training for the errors of every step to settle. Here the teacher's ODE is at most N = 10 network calls, so the
target is the exact end of the trajectory: the teacher solves from x_t to t = 0 (without gradients, batched).
No target network, no bootstrapped error, and the student fits its teacher's sampler, not an approximation of
it, in a few percent of the teacher's training (BENCHMARKS.md). Distribution matching (OneDP) would need a
second score network trained alongside; the direct target needs nothing but the teacher.

Where trajectories start. A share of each batch (distill_pure_noise_share, half by default) starts from pure
noise at t_0, exactly as the teacher's sampler starts (what a one-step student sees). The rest starts at a
grid point drawn uniformly after t_0, with the training chunk noised to it by the forward process: what
multistep consistency sampling feeds the student after re-noising its first estimate
(samplers.consistency_table).

The options of diffusion training (noise_samples_per_observation, min_snr_gamma, aux_action_loss_weight,
do_mask_loss_for_padding, a compiled loss) do not apply here: the target is the teacher's chunk over the whole
horizon, whatever the data's padding.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from lerobot.configs import PreTrainedConfig
from lerobot.utils.constants import ACTION

from . import samplers
from .checkpoint import decode, differing_fields, model_fields
from .errors import CheckpointError

def teacher_ends(teacher, features: Tensor, x_start: Tensor, start: Tensor, table: samplers.StepTable,
                 clip: float | None) -> Tensor:
    """Ends at t = 0 of the teacher's DDIM trajectories through x_start (B, H, A) at grid index `start` (B,)."""
    x = x_start.clone()
    for i in range(table.timesteps.shape[0]):
        rows = (start <= i).nonzero().squeeze(1)  # trajectories already under way at step i
        if rows.numel() == 0:
            continue
        x_i = x.index_select(0, rows)
        out = teacher.denoiser(x_i, table.timesteps[i].expand(rows.numel()), features.index_select(0, rows))
        x_next, _ = samplers.reverse_step(table.coef[i], out, x_i, teacher.prediction_type, clip)
        x = x.index_copy(0, rows, x_next)
    return x


def distillation_loss(student, teacher, batch: dict[str, Tensor], generator: torch.Generator, distilled_steps: int,
                      pure_noise_share: float = 0.5, reduction: str = "mean") -> Tensor:
    """Mean squared error between the student's estimate of each trajectory's end and the teacher's end.

    `student` and `teacher` are DiffusionPlusModel; the teacher is frozen. One trajectory per training sample:
    its noise, then its start, are drawn from `generator`.
    """
    x0 = batch[ACTION]
    obs = {k: batch[k] for k in student.input_keys}
    table = teacher.step_table("DDIM", distilled_steps, x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    later = torch.randint(1, distilled_steps, (x0.shape[0],), generator=generator, device=x0.device) \
        if distilled_steps > 1 else torch.zeros(x0.shape[0], dtype=torch.long, device=x0.device)
    pure = torch.rand(x0.shape[0], generator=generator, device=x0.device) < pure_noise_share
    start = torch.where(pure, torch.zeros_like(later), later)
    t = table.timesteps[start]
    x_start = torch.where(pure.view(-1, 1, 1), noise, samplers.add_noise(student.alphas_cumprod, x0, noise, t))
    with torch.no_grad():
        target = teacher_ends(teacher, teacher.encode(obs), x_start, start, table, teacher.clip_sample_range)
    out = student.denoiser(x_start, t, student.encode(obs))
    a = student.alphas_cumprod[t].view(-1, 1, 1)
    _, estimate = samplers.split_output(out, x_start, a.sqrt(), (1 - a).sqrt(), student.prediction_type)
    loss = F.mse_loss(estimate, target, reduction="none")
    return loss.flatten(1).mean(1) if reduction == "none" else loss.mean()


def load_teacher(path: str | Path, student_config, device: torch.device):
    """The teacher's acting network (EMA weights when it has them), frozen, checked to be the student's network."""
    from .modeling_diffusion_plus import DiffusionPlusPolicy  # the policy module imports this one

    folder = Path(path)
    if not (folder / "model.safetensors").is_file():
        raise CheckpointError(
            f"distill_teacher_path={str(path)!r} holds no model.safetensors: give the `pretrained_model` folder of "
            "a trained checkpoint"
        )
    config = PreTrainedConfig.from_pretrained(folder)
    config.device = device.type  # where the student trains, whatever the teacher was trained on
    teacher = DiffusionPlusPolicy.from_pretrained(folder, config=config)
    saved, wanted = decode(teacher.model_fields), model_fields(student_config)
    differ = differing_fields(saved, wanted, ignore=("distilled_steps",))
    if differ or teacher.config.distilled_steps is not None:
        what = ", ".join(f"{k}: teacher {saved[k]!r}, student {wanted[k]!r}" for k in differ) or "it is a student"
        raise CheckpointError(
            f"the teacher at {folder} is not the network this student was started from ({what}); start the "
            "student with --policy.path set to its teacher's folder"
        )
    return teacher.inference_model.to(device).eval().requires_grad_(False)

