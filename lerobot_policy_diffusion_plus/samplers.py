"""Noise schedules and reverse-diffusion samplers, as pure tensor math.

Nothing here holds model state: a schedule is a tensor of cumulative alphas, a sampler turns it into a
table of per-step coefficients once, and `denoise` walks that table with any denoiser callable (a sampler
is found by name in registry.SAMPLERS: a table builder, whose table names the step that reads it). Keeping
the per-step work to a few fused multiply-adds on precomputed tensors (no Python-side scalar lookups, no
scheduler object) is what keeps batch-1 inference cheap.

The formulas follow DDPM (Ho et al. 2020) and DDIM (Song et al. 2021) with the "leading" timestep
spacing and `clip_sample` of the Diffusion Policy reference code, and DPM-Solver++(2M) (Lu et al. 2022),
a second-order multistep solver for few-step sampling, on an evenly spaced grid from t = T - 1 down to a
clean sample. Results match the common implementations step for step (tests/test_samplers.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from . import registry
from .registry import BETA_SCHEDULES, DISTILLED_SAMPLERS, PREDICTION_TYPES, SAMPLERS

# A denoiser bound to one chunk's observation: (x_t, row i of the step table) -> its output at timesteps[i].
ChunkDenoiser = Callable[[Tensor, int], Tensor]
# A rewrite of the clean-sample estimate x0 -> x0' applied at every step (inpainting, real-time chunking).
Guide = Callable[[Tensor], Tensor]


def make_betas(schedule: str, num_train_timesteps: int, beta_start: float, beta_end: float) -> Tensor:
    """Per-step noise variances beta_t, float32, shape (T,)."""
    T = num_train_timesteps
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float32)
    if schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2
    if schedule == "squaredcos_cap_v2":
        # Cosine schedule of Nichol & Dhariwal (2021); beta capped at 0.999 to avoid a singular last step.
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)]
        return torch.tensor(betas, dtype=torch.float32)
    raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {schedule!r}")


def make_alphas_cumprod(schedule: str, num_train_timesteps: int, beta_start: float, beta_end: float) -> Tensor:
    return torch.cumprod(1.0 - make_betas(schedule, num_train_timesteps, beta_start, beta_end), dim=0)


def add_noise(alphas_cumprod: Tensor, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """Forward process q(x_t | x_0) for a batch of timesteps t (B,) on x0 (B, ...)."""
    a = alphas_cumprod.to(x0.device)[t].to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def training_target(prediction_type: str, x0: Tensor, noise: Tensor) -> Tensor:
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
    raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


def inference_timesteps(num_train_timesteps: int, num_inference_steps: int, spacing: str = "leading") -> Tensor:
    """Timesteps high to low. "leading": T=100, n=10 -> 90, 80, ..., 0. "linspace": n points of an even
    grid from T - 1 to 0 without its last point, e.g. n=4 -> 99, 74, 50, 25 (few-step solvers start from
    pure noise and finish with a jump to the clean sample)."""
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(
            f"num_inference_steps must be in [1, num_train_timesteps={num_train_timesteps}], "
            f"got {num_inference_steps}"
        )
    if spacing == "linspace":
        if num_inference_steps >= num_train_timesteps:  # n + 1 grid points on T - 1 integers would repeat one
            raise ValueError(f"linspace spacing needs num_inference_steps < {num_train_timesteps}, got {num_inference_steps}")
        grid = torch.linspace(0, num_train_timesteps - 1, num_inference_steps + 1, dtype=torch.float64)
        return grid.round().long().flip(0)[:-1]
    ratio = num_train_timesteps // num_inference_steps
    return torch.arange(num_inference_steps - 1, -1, -1, dtype=torch.long) * ratio


class Coefficients(NamedTuple):
    """One step's coefficients for `reverse_step` (DDPM, DDIM, DPM++2M), in the order of a StepTable row.

    From the model output, x0 = (x_t - sqrt_one_minus_alpha_bar * eps) / sqrt_alpha_bar or
    eps = (x_t - sqrt_alpha_bar * x0) / sqrt_one_minus_alpha_bar (whichever the model does not predict), then
        x_{t-1} = x0_coef * clip(x0) + x_t_coef * x_t + eps_coef * eps + sigma * z + prev_x0_coef * x0_prev
    with z ~ N(0, I). DDPM: x0_coef and x_t_coef are the posterior mean's (Ho et al. eq. 7), sigma its standard
    deviation. DDIM (eta = 0): x0_coef = sqrt(alpha_bar_prev), eps_coef = sqrt(1 - alpha_bar_prev) (Song et
    al. eq. 12). DPM-Solver++(2M): prev_x0_coef weighs the (clipped) x0 of the step before; 0 otherwise.
    """

    sqrt_alpha_bar: Tensor
    sqrt_one_minus_alpha_bar: Tensor
    x0_coef: Tensor
    x_t_coef: Tensor
    eps_coef: Tensor
    sigma: Tensor
    prev_x0_coef: Tensor


def split_output(
    out: Tensor, x_t: Tensor, sqrt_alpha_bar: Tensor, sqrt_one_minus_alpha_bar: Tensor, prediction_type: str
) -> tuple[Tensor, Tensor]:
    """(eps, x0) from a denoiser output at x_t = sqrt_alpha_bar * x0 + sqrt_one_minus_alpha_bar * eps: the one it
    predicts is `out`, the other follows from x_t."""
    if prediction_type == "epsilon":
        return out, (x_t - sqrt_one_minus_alpha_bar * out) / sqrt_alpha_bar
    return (x_t - sqrt_alpha_bar * out) / sqrt_one_minus_alpha_bar, out


def reverse_step(
    row: Tensor,
    out: Tensor,
    x_t: Tensor,
    prediction_type: str,
    clip: float | None,
    noise: Tensor | None = None,
    guide_x0: Guide | None = None,
    prev_x0: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One reverse step from x_t given the denoiser output `out`, using one row of a StepTable.

    Returns (x_prev, x0): multistep solvers take this step's x0 as `prev_x0` of the next.
    `guide_x0`, when given, rewrites the clean-sample estimate before it is used (inpainting / guidance,
    e.g. real-time chunking pulls it toward the previous chunk); eps stays the model's.
    """
    c = Coefficients(*row.unbind())
    eps, x0 = split_output(out, x_t, c.sqrt_alpha_bar, c.sqrt_one_minus_alpha_bar, prediction_type)
    # eps stays the unclipped one, as the reference samplers do.
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
    if guide_x0 is not None:
        x0 = guide_x0(x0)
    x_prev = c.x0_coef * x0 + c.x_t_coef * x_t + c.eps_coef * eps
    if noise is not None:
        x_prev = x_prev + c.sigma * noise
    if prev_x0 is not None:
        x_prev = x_prev + c.prev_x0_coef * prev_x0
    return x_prev, x0


# One reverse step, as `reverse_step`: (row of a StepTable, denoiser output, x_t, prediction_type, clip, noise,
# guide_x0, x0 of the step before) -> (x_prev, x0).
StepFn = Callable[..., tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class StepTable:
    """Per-step coefficients of one sampler, precomputed for a fixed number of steps.

    `coef` row i is what `step` reads for the step at `timesteps[i]`; rows are in sampling order. One tensor
    rather than a Python object per step lets a step be pure tensor arithmetic. The samplers here share
    `reverse_step` and its `Coefficients` columns; a sampler that does not fit them brings its own step.
    """

    timesteps: Tensor  # (n,) long
    coef: Tensor  # (n, columns)
    step: StepFn = reverse_step
    stochastic: bool = False  # whether `step` adds noise: `denoise` then draws it for every step

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "StepTable":
        return replace(self, timesteps=self.timesteps.to(device), coef=self.coef.to(device, dtype))


def make_step_table(
    sampler: str, alphas_cumprod: Tensor, num_inference_steps: int, distilled_steps: int | None = None
) -> StepTable:
    """The table of the sampler `sampler` (a noise_scheduler_type) names in registry.SAMPLERS, or, for a student
    distilled from its teacher's DDIM-`distilled_steps`, in registry.DISTILLED_SAMPLERS."""
    if distilled_steps is None:
        if sampler not in SAMPLERS:
            raise ValueError(f"noise_scheduler_type must be one of {tuple(SAMPLERS)}, got {sampler!r}")
        return registry.load(SAMPLERS[sampler])(alphas_cumprod, num_inference_steps)
    if sampler not in DISTILLED_SAMPLERS:
        raise ValueError(
            f"noise_scheduler_type must be one of {tuple(DISTILLED_SAMPLERS)} for a distilled student, got {sampler!r}"
        )
    return registry.load(DISTILLED_SAMPLERS[sampler])(alphas_cumprod, num_inference_steps, distilled_steps)


def _leading_steps(alphas_cumprod: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """DDPM's and DDIM's timesteps ("leading" spacing), with alpha_bar at each and at the step after it."""
    T = alphas_cumprod.shape[0]
    ts = inference_timesteps(T, n)
    prev = ts - T // n
    # float32 on purpose: the common implementations compute in float32, and matching them to 1e-5 near
    # t = T (where alpha_bar is tiny and x0 = (x_t - b * eps) / a is large) needs the same rounding.
    acp = alphas_cumprod.float()
    a_t = acp[ts]
    # Past the last step the signal is clean: alpha_bar = 1 (DDIM's set_alpha_to_one, DDPM's convention).
    a_prev = torch.where(prev >= 0, acp[prev.clamp(min=0)], torch.ones_like(a_t))
    return ts, a_t, a_prev


def _table(ts: Tensor, coef: Coefficients) -> StepTable:
    return StepTable(ts, torch.stack(coef, dim=1), stochastic=bool((coef.sigma != 0).any()))


def ddim_table(alphas_cumprod: Tensor, num_inference_steps: int) -> StepTable:
    """Deterministic DDIM (eta = 0)."""
    ts, a_t, a_prev = _leading_steps(alphas_cumprod, num_inference_steps)
    zero = torch.zeros_like(a_t)
    return _table(ts, Coefficients(
        sqrt_alpha_bar=a_t.sqrt(), sqrt_one_minus_alpha_bar=(1 - a_t).sqrt(), x0_coef=a_prev.sqrt(),
        x_t_coef=zero, eps_coef=(1 - a_prev).sqrt(), sigma=zero, prev_x0_coef=zero,
    ))


def ddpm_table(alphas_cumprod: Tensor, num_inference_steps: int) -> StepTable:
    """DDPM ancestral sampling."""
    ts, a_t, a_prev = _leading_steps(alphas_cumprod, num_inference_steps)
    zero = torch.zeros_like(a_t)
    alpha = a_t / a_prev
    beta = 1 - alpha
    variance = ((1 - a_prev) / (1 - a_t) * beta).clamp(min=1e-20)
    return _table(ts, Coefficients(
        sqrt_alpha_bar=a_t.sqrt(), sqrt_one_minus_alpha_bar=(1 - a_t).sqrt(),
        x0_coef=a_prev.sqrt() * beta / (1 - a_t), x_t_coef=alpha.sqrt() * (1 - a_prev) / (1 - a_t),
        eps_coef=zero, sigma=torch.where(ts > 0, variance.sqrt(), zero), prev_x0_coef=zero,
    ))


def dpm_solver_pp_2m_table(alphas_cumprod: Tensor, n: int) -> StepTable:
    """DPM-Solver++(2M) in data (x0) prediction form, ending with a first-order jump to sigma = 0.

    With alpha = sqrt(alpha_bar), sigma = sqrt(1 - alpha_bar), lambda = log(alpha / sigma) and
    h = lambda_next - lambda_t, a first-order step is  x_next = (sigma_next / sigma_t) x_t +
    alpha_next (1 - e^-h) x0_t  (DDIM); a second-order step replaces x0_t by
    (1 + 1 / (2 r)) x0_t - 1 / (2 r) x0_prev  with  r = h_prev / h. The first step has no history and the
    last one lands on sigma = 0 where the extrapolation is unstable, so both are first order.
    """
    ts = inference_timesteps(alphas_cumprod.shape[0], n, spacing="linspace")
    acp = alphas_cumprod.double()[ts]
    alpha, sigma = acp.sqrt(), (1 - acp).sqrt()
    lam = alpha.log() - sigma.log()
    # Next point of each step; the one after the last is the clean sample (alpha = 1, sigma = 0).
    alpha_next = torch.cat([alpha[1:], torch.ones(1, dtype=alpha.dtype)])
    sigma_next = torch.cat([sigma[1:], torch.zeros(1, dtype=alpha.dtype)])
    h = torch.cat([lam[1:] - lam[:-1], torch.full((1,), math.inf, dtype=alpha.dtype)])
    jump = alpha_next * -torch.expm1(-h)  # alpha_next (1 - e^-h); = 1 on the final step
    half_inv_r = torch.zeros(n, dtype=alpha.dtype)  # 1 / (2 r); stays 0 on the first-order steps
    half_inv_r[1:-1] = 0.5 * h[1:-1] / h[:-2]
    zero = torch.zeros_like(alpha)
    coef = Coefficients(
        sqrt_alpha_bar=alpha, sqrt_one_minus_alpha_bar=sigma, x0_coef=jump * (1 + half_inv_r),
        x_t_coef=sigma_next / sigma, eps_coef=zero, sigma=zero, prev_x0_coef=-jump * half_inv_r,
    )
    return StepTable(ts, torch.stack(coef, dim=1).float())


def consistency_table(alphas_cumprod: Tensor, num_inference_steps: int, distilled_steps: int) -> StepTable:
    """Multistep consistency sampling (Song et al. 2023, algorithm 1) of a student distilled from DDIM-N.

    The student maps x_t at a point t of its teacher's DDIM-N grid straight to the end of the teacher's
    trajectory (distillation.py). Step i: x0 = f(x, t_i); then, but for the last step, noise x0 forward to the
    next point, x = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) z. The n points are taken evenly from the top of the
    grid, which always starts at the teacher's first timestep (the one pure noise stands for): on DDIM-10's
    90, 80, ..., 0, one step is 90 and two are 90, 40. Columns: sqrt(alpha_bar) and sqrt(1 - alpha_bar) at t_i
    and at the next point (1 and 0 after the last: x = x0).
    """
    if not 1 <= num_inference_steps <= distilled_steps:
        raise ValueError(
            f"num_inference_steps must be in [1, distilled_steps={distilled_steps}], got {num_inference_steps}"
        )
    grid = inference_timesteps(alphas_cumprod.shape[0], distilled_steps)
    ts = grid[[i * distilled_steps // num_inference_steps for i in range(num_inference_steps)]]
    a_t = alphas_cumprod.float()[ts]
    a_next = torch.cat([a_t[1:], torch.ones(1)])
    coef = torch.stack([a_t.sqrt(), (1 - a_t).sqrt(), a_next.sqrt(), (1 - a_next).sqrt()], dim=1)
    return StepTable(ts, coef, step=consistency_step, stochastic=num_inference_steps > 1)


def consistency_step(
    row: Tensor, out: Tensor, x_t: Tensor, prediction_type: str, clip: float | None, noise: Tensor | None = None,
    guide_x0: Guide | None = None, prev_x0: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One step of `consistency_table`, with `reverse_step`'s arguments (prev_x0 is not used)."""
    sqrt_a, sqrt_1m_a, sqrt_a_next, sqrt_1m_a_next = row.unbind()
    _, x0 = split_output(out, x_t, sqrt_a, sqrt_1m_a, prediction_type)
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
    if guide_x0 is not None:
        x0 = guide_x0(x0)
    if noise is None:
        return x0, x0
    return sqrt_a_next * x0 + sqrt_1m_a_next * noise, x0


def denoise(
    denoiser: ChunkDenoiser,
    x_T: Tensor,
    table: StepTable,
    prediction_type: str,
    clip: float | None,
    generator: torch.Generator | None = None,
    guide_x0: Guide | None = None,
) -> Tensor:
    """Run the reverse process from x_T. DDPM draws fresh noise each step from `generator`."""
    x, x0 = x_T, None
    for i in range(table.timesteps.shape[0]):
        # Copied because of CUDA graphs (compile_mode="reduce-overhead" on a GPU): the denoiser's output is a
        # buffer that its next call overwrites, and x0 can be that very tensor (prediction_type="sample",
        # no clipping, a guide that keeps it) while the multistep solver still reads it at the next step.
        out = denoiser(x, i).clone()
        noise = None
        if table.stochastic:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x, x0 = table.step(table.coef[i], out, x, prediction_type, clip, noise, guide_x0, x0)
    return x
